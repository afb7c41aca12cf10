"""Chat conversations → tinker.Datums: prefect-tinker's loader vs a one-at-a-time loop.

Generates 10,000 chat conversations (seeded), writes them as JSONL, then turns them into Datums
twice with the same Qwen3 renderer and max_length:

- baseline: the straightforward loop — read a line, json-decode it, render it with tml-renderers,
  convert the example with tml-renderers' Tinker helper, shift it and build a `tinker.Datum` from
  Python lists (what tinker-cookbook's `datum_from_model_input_weights` does);
- ours: `prefect_tinker.data.load_dataset` (serial, and with its automatic worker choice).

Prints conversations/s for each and the ratio; checks both give the same tokens and weights.

    python bench/datums.py [--conversations 10000] [--model Qwen/Qwen3-8B]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

WORDS = [
    "the",
    "model",
    "learns",
    "from",
    "data",
    "and",
    "code",
    ";",
    "def",
    "train",
    "(",
    "x",
    ")",
    ":",
    "return",
    "x",
    "*",
    "2",
    "42",
    "3.14",
    "hello",
    "world",
    "tokens",
    "fine",
    "tune",
    "adapter",
    "LoRA",
    "rank",
    "batch",
    "epoch",
    "loss",
    "gradient",
    "Prefect",
    "flow",
    "task",
    "retry",
]


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def write_conversations(path: Path, count: int, seed: int = 0) -> None:
    """`count` conversations of 1-3 user/assistant turns, a third with a system prompt."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            messages = [{"role": "system", "content": _sentence(rng, 4, 12)}] if i % 3 == 0 else []
            for _turn in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": _sentence(rng, 5, 30)})
                messages.append({"role": "assistant", "content": _sentence(rng, 10, 60)})
            f.write(json.dumps({"messages": messages}) + "\n")


def baseline(path: Path, renderer, max_length: int) -> list:
    """One conversation at a time, the way a first script would do it."""
    import tinker
    from tml_renderers import chat
    from tml_renderers.tinker import training_example_to_tinker_model_input_and_weights

    datums = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            messages = json.loads(line)["messages"]
            examples = renderer.native.render_for_sft(chat.MessageList.from_oss_messages(messages))
            model_input, weights = training_example_to_tinker_model_input_and_weights(examples[-1])
            tokens = model_input.to_ints()[:max_length]
            weights = weights[:max_length]
            datums.append(
                tinker.Datum(
                    model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights[1:]},
                )
            )
    return datums


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.model_input.to_ints() != y.model_input.to_ints():
            return False
        for key in ("target_tokens", "weights"):
            if x.loss_fn_inputs[key].tolist() != y.loss_fn_inputs[key].tolist():
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--model", default="Qwen/Qwen3-8B")
    parser.add_argument("--max-length", type=int, default=2048)
    args = parser.parse_args()

    from prefect_tinker.data import load_dataset
    from prefect_tinker.models import get_renderer

    renderer = get_renderer(None, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        write_conversations(path, args.conversations)
        renderer.render(
            [{"role": "user", "content": "warm"}, {"role": "assistant", "content": "up"}]
        )
        n = args.conversations

        started = time.perf_counter()
        base = baseline(path, renderer, args.max_length)
        base_rate = n / (time.perf_counter() - started)

        started = time.perf_counter()
        serial = load_dataset(path, renderer=renderer, max_length=args.max_length, workers=1)
        serial_rate = n / (time.perf_counter() - started)

        started = time.perf_counter()
        auto = load_dataset(path, renderer=renderer, max_length=args.max_length)
        auto_rate = n / (time.perf_counter() - started)

        same = _same(base, serial.train) and _same(base, auto.train)
        size_mb = path.stat().st_size / 1e6
    print(
        f"{n} conversations ({size_mb:.1f} MB JSONL), renderer {renderer.name}, "
        f"max_length {args.max_length}"
    )
    print(f"baseline one-at-a-time loop : {base_rate:8.0f} conv/s")
    print(
        f"prefect-tinker, 1 process   : {serial_rate:8.0f} conv/s  ({serial_rate / base_rate:.2f}x)"
    )
    print(f"prefect-tinker, auto workers: {auto_rate:8.0f} conv/s  ({auto_rate / base_rate:.2f}x)")
    print(f"identical datums: {same}")

    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _report import report

    report(
        "datums",
        f"{n} chat conversations ({size_mb:.1f} MB JSONL) -> Datums, renderer {renderer.name}, "
        f"max_length {args.max_length}; identical datums: {same}",
        figures={
            "one-at-a-time loop conv/s": base_rate,
            "ours, 1 process conv/s": serial_rate,
            "ours, auto workers conv/s": auto_rate,
        },
        ratios={
            "ours (1 process) / one-at-a-time loop": (serial_rate / base_rate, ">= 2"),
            "ours (auto workers) / one-at-a-time loop": (auto_rate / base_rate, ">= 2"),
        },
    )


if __name__ == "__main__":
    main()
