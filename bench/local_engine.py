"""Training tokens/s through the official SDK on the local service vs a direct peft loop.

Both sides train the same stand-in (``Qwen/Qwen3-0.6B``: real Qwen3 tokenizer ids, tiny random
Qwen3 model with the full 151,936-token vocabulary), the same LoRA (rank 8, alpha 32, attention
+ MLP + lm_head), with AdamW on the same batches (4 x 64 tokens by default) and the same summed
cross-entropy loss. The SDK side submits forward_backward and optim_step back to back and waits
for both, as the cookbook loop does; the baseline is a plain peft + torch loop in this process.
The first step of each side is a warm-up and is not timed; then the two sides alternate step by
step, so background load on a shared machine slows both alike.

    python bench/local_engine.py               # 20 steps
    python bench/local_engine.py --steps 5     # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _report import report  # noqa: E402

BASE_MODEL = "Qwen/Qwen3-0.6B"
RANK = 8
LR = 1e-4


def make_batches(steps: int, batch_size: int, seq_len: int) -> list[list[list[int]]]:
    """`steps` batches of `batch_size` token sequences (seq_len + 1 tokens each), seeded."""
    rng = np.random.default_rng(0)
    return [
        [rng.integers(0, 151_000, seq_len + 1).tolist() for _ in range(batch_size)]
        for _ in range(steps)
    ]


class SdkTrainer:
    """Steps through tinker.ServiceClient against an in-process LocalTinker."""

    def __init__(self, data_dir: Path) -> None:
        import tinker

        from prefect_tinker.local import LocalTinker

        self.service = LocalTinker(data_dir=data_dir).start()
        client = tinker.ServiceClient(base_url=self.service.base_url, api_key=self.service.api_key)
        self.training = client.create_lora_training_client(
            base_model=BASE_MODEL, rank=RANK, seed=0
        ).result()
        self.adam = tinker.AdamParams(learning_rate=LR, beta1=0.9, beta2=0.95, eps=1e-12)
        self.tinker = tinker

    def step(self, batch: list[list[int]]) -> float:
        tinker = self.tinker
        data = [
            tinker.Datum(
                model_input=tinker.ModelInput.from_ints(seq[:-1]),
                loss_fn_inputs={"target_tokens": seq[1:], "weights": [1.0] * (len(seq) - 1)},
            )
            for seq in batch
        ]
        fwd = self.training.forward_backward(data, "cross_entropy")
        opt = self.training.optim_step(self.adam)
        loss = fwd.result().metrics["loss:sum"]
        opt.result()
        return loss

    def close(self) -> None:
        self.service.stop()


class PeftTrainer:
    """A straightforward peft + AdamW loop on the same model, LoRA and loss."""

    def __init__(self, model_dir: Path) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        config = LoraConfig(r=RANK, lora_alpha=32, target_modules=[*targets, "lm_head"])
        self.model = get_peft_model(model, config)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=LR, betas=(0.9, 0.95), eps=1e-12, weight_decay=0.0
        )

    def step(self, batch: list[list[int]]) -> float:
        seqs = torch.tensor(batch)
        logits = self.model(input_ids=seqs[:, :-1]).logits
        logprobs = -torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), seqs[:, 1:].reshape(-1), reduction="none"
        )
        loss = -logprobs.sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


def interleaved(
    trainers: dict[str, SdkTrainer | PeftTrainer], batches: list[list[list[int]]]
) -> dict[str, tuple[float, float]]:
    """Per trainer (seconds of timed steps, last loss); steps alternate so load hits both alike."""
    for trainer in trainers.values():
        trainer.step(batches[0])  # warm-up, not timed
    seconds = dict.fromkeys(trainers, 0.0)
    losses = dict.fromkeys(trainers, 0.0)
    names = list(trainers)
    for index, batch in enumerate(batches[1:]):
        for name in names if index % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            losses[name] = trainers[name].step(batch)
            seconds[name] += time.perf_counter() - started
    return {name: (seconds[name], losses[name]) for name in names}


def _tokens(batches: list[list[list[int]]]) -> int:
    return sum(len(seq) - 1 for batch in batches for seq in batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args()

    # Importing the engine here loads transformers + peft in the main thread, before the
    # service's worker does: two threads importing transformers at once can fail.
    from prefect_tinker.local.engine import Engine
    from prefect_tinker.local.server import engine_cache_dir

    # Engine() sets torch's (process-wide) thread count, so both sides run with the same one.
    batches = make_batches(args.steps + 1, args.batch_size, args.seq_len)
    model_dir = Engine(engine_cache_dir()).models.standin_dir(BASE_MODEL)
    with tempfile.TemporaryDirectory(prefix="bench-local-engine-") as tmp:
        sdk = SdkTrainer(Path(tmp))
        try:
            timed = interleaved({"sdk": sdk, "peft": PeftTrainer(model_dir)}, batches)
        finally:
            sdk.close()
    tokens = _tokens(batches[1:])
    (sdk_s, sdk_loss), (peft_s, peft_loss) = timed["sdk"], timed["peft"]
    sdk_rate, peft_rate = tokens / sdk_s, tokens / peft_s
    step_tokens = args.batch_size * args.seq_len
    report(
        "local_engine",
        f"{BASE_MODEL} stand-in, LoRA r={RANK}, {args.steps} steps of "
        f"{args.batch_size}x{args.seq_len} tokens, torch threads={torch.get_num_threads()}",
        figures={
            "SDK -> LocalTinker train tokens/s": sdk_rate,
            "direct peft loop train tokens/s": peft_rate,
            "SDK -> LocalTinker s/step": step_tokens / sdk_rate,
            "direct peft loop s/step": step_tokens / peft_rate,
            "SDK final loss:sum": sdk_loss,
            "peft final loss:sum": peft_loss,
        },
        ratios={"SDK on LocalTinker / direct peft": (sdk_rate / peft_rate, ">= 0.85")},
    )


if __name__ == "__main__":
    main()
