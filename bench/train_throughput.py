"""Training steps/s on the local service with a simulated clock cycle per future.

Each runner trains the same synthetic data for the same number of steps on a fresh training
run (create, N steps of forward_backward + optim_step, one final save_state) and returns the
wall time of its step loop: from the first step's submission to the last step's results
(run creation, resume lookup and the final save's completion are not steps).
Runners live in `RUNNERS`; another column (e.g. `sft_pipeline`) is one more entry:

    from train_throughput import RUNNERS, BenchSetup
    RUNNERS["sft_pipeline"] = lambda setup: run_my_flow(setup)   # -> seconds of steps

    python bench/train_throughput.py                  # 24 steps, 0.2 s per future
    python bench/train_throughput.py --steps 8        # quick
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tinker

from prefect_tinker.local import FaultConfig, LocalTinker
from prefect_tinker.training import TrainConfig, train

sys.path.insert(0, str(Path(__file__).parent))
from _report import report  # noqa: E402
from _sft_pipeline_runner import run_sft_pipeline  # noqa: E402

STAND_IN = "Qwen/Qwen3-0.6B"  # the engine's stand-in: real 151,936-token vocabulary


def tiny_local_model(dest: Path) -> str:
    """A seeded 2-layer Qwen3 with a 2,048-token vocabulary, as a local HF model directory.

    The stand-in's full-vocabulary unembedding makes each step cost 0.1-1.5 s of CPU on a
    shared 2-core machine, which would drown the simulated clock this benchmark is about.
    """
    from prefect_tinker.local.basemodels import write_tiny_qwen3

    write_tiny_qwen3(dest, vocab_size=2048, max_position_embeddings=2048)
    return str(dest)


class SyntheticDataset:
    """`n` short next-token datums from a seeded RNG; deterministic batches per epoch."""

    def __init__(self, n: int, seq_len: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.datums = []
        for _ in range(n):
            tokens = [rng.randrange(10, 2000) for _ in range(seq_len + 1)]
            self.datums.append(
                tinker.Datum(
                    model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * seq_len},
                )
            )
        self.fingerprint = hashlib.sha256(f"synthetic:{n}:{seq_len}:{seed}".encode()).hexdigest()

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list[tinker.Datum]]:
        order = list(range(len(self.datums)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        return [
            [self.datums[i] for i in order[j : j + batch_size]]
            for j in range(0, len(order), batch_size)
        ]


@dataclass
class BenchSetup:
    base_url: str
    api_key: str
    base_model: str
    dataset: SyntheticDataset
    steps: int
    batch_size: int
    depth: int
    runs: list[str] = field(default_factory=list)  # run keys used, unique per runner call

    def service_client(self) -> tinker.ServiceClient:
        return tinker.ServiceClient(base_url=self.base_url, api_key=self.api_key)

    def config(self, run_key: str) -> TrainConfig:
        return TrainConfig(
            run_key=run_key,
            base_model=self.base_model,
            learning_rate=1e-3,
            lr_schedule="constant",
            batch_size=self.batch_size,
            max_steps=self.steps,
            checkpoint_every=None,
            pipeline_depth=self.depth,
            lora={"rank": 4, "seed": 0},
        )

    def batches(self) -> list[list[tinker.Datum]]:
        return self.dataset.batches(self.batch_size, 0, 0)[: self.steps]

    def new_run_key(self, label: str) -> str:
        key = f"bench-{label}-{len(self.runs)}-{time.time_ns()}"
        self.runs.append(key)
        return key


Runner = Callable[[BenchSetup], float]


def run_train(setup: BenchSetup) -> float:
    """Our `train()`: pipelined; its loop time comes from its own per-step metrics."""
    with setup.service_client() as service:
        result = train(service, setup.dataset, setup.config(setup.new_run_key("train")))
    assert result.steps_run == setup.steps
    return result.metrics[-1]["elapsed_s"]


def _create(setup: BenchSetup, service: tinker.ServiceClient) -> tinker.TrainingClient:
    return service.create_lora_training_client(setup.base_model, rank=4, seed=0).result()


def run_raw_submit_ahead(setup: BenchSetup) -> float:
    """Hand-written SDK loop: submit step k+1 before awaiting step k (depth as configured)."""
    with setup.service_client() as service:
        client = _create(setup, service)
        adam = tinker.AdamParams(learning_rate=1e-3)
        in_flight: deque[tuple[tinker.APIFuture, tinker.APIFuture]] = deque()
        started = time.perf_counter()
        for batch in setup.batches():
            fb = client.forward_backward(batch, "cross_entropy")
            in_flight.append((fb, client.optim_step(adam)))
            if len(in_flight) >= setup.depth:
                fb, opt = in_flight.popleft()
                fb.result(), opt.result()
        save = client.save_state("final")
        for fb, opt in in_flight:
            fb.result(), opt.result()
        elapsed = time.perf_counter() - started
        save.result()
        return elapsed


def run_non_pipelined(setup: BenchSetup) -> float:
    """Await every result before submitting the next request."""
    with setup.service_client() as service:
        client = _create(setup, service)
        adam = tinker.AdamParams(learning_rate=1e-3)
        started = time.perf_counter()
        for batch in setup.batches():
            client.forward_backward(batch, "cross_entropy").result()
            client.optim_step(adam).result()
        elapsed = time.perf_counter() - started
        client.save_state("final").result()
        return elapsed


RUNNERS: dict[str, Runner] = {
    "train()": run_train,
    "raw SDK submit-ahead": run_raw_submit_ahead,
    "non-pipelined": run_non_pipelined,
    "sft_pipeline": run_sft_pipeline,
}


def measure(setup: BenchSetup, repeats: int) -> dict[str, float]:
    """Median steps/s of each runner; runners interleave so noise hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in RUNNERS}
    for _ in range(repeats):
        for name, runner in RUNNERS.items():
            times[name].append(runner(setup))
    return {name: setup.steps / statistics.median(t) for name, t in times.items()}


def _step_compute_s(service: LocalTinker) -> float:
    """Worker seconds the service spent on forward_backward + optim_step so far."""
    return sum(
        seconds
        for kind, seconds in service.stats.compute_s.items()
        if kind in {"ForwardBackward", "OptimStep"}
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per future")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model",
        default="tiny-local",
        help=f"'tiny-local' (2,048-token vocabulary, written to a temp dir) or {STAND_IN!r}",
    )
    args = parser.parse_args(argv)

    dataset = SyntheticDataset(args.steps * args.batch_size, args.seq_len)
    with (
        tempfile.TemporaryDirectory() as data_dir,
        LocalTinker(data_dir, faults=FaultConfig(latency_s=args.latency)) as service,
    ):
        model = args.model
        if model == "tiny-local":
            model = tiny_local_model(Path(data_dir) / "tiny-qwen3")
        setup = BenchSetup(
            service.base_url,
            service.api_key,
            model,
            dataset,
            args.steps,
            args.batch_size,
            args.depth,
        )
        RUNNERS["non-pipelined"](setup)  # warm-up: loads the base model once
        compute_before = _step_compute_s(service)
        rates = measure(setup, args.repeats)
        steps_measured = args.steps * args.repeats * len(RUNNERS)
        compute_per_step = (_step_compute_s(service) - compute_before) / steps_measured

    ours, raw, naive = rates["train()"], rates["raw SDK submit-ahead"], rates["non-pipelined"]
    extra = {}
    for name, rate in rates.items():
        if name not in {"train()", "raw SDK submit-ahead", "non-pipelined"}:
            extra[f"{name} / raw SDK submit-ahead"] = (rate / raw, ">= 0.97")
            extra[f"{name} / non-pipelined"] = (rate / naive, ">= 1.8")
    report(
        "train_throughput",
        f"{args.steps} steps x {args.batch_size}x{args.seq_len} tokens, {args.latency}s per "
        f"future, depth {args.depth}, median of {args.repeats}, model {args.model}",
        figures={
            **{f"{name} steps/s": rate for name, rate in rates.items()},
            "service compute s/step (fwd/bwd + optim)": compute_per_step,
            "load average (1 min) at the end": os.getloadavg()[0],
        },
        ratios={
            "train() / raw SDK submit-ahead": (ours / raw, ">= 0.97"),
            "train() / non-pipelined": (ours / naive, ">= 1.8"),
            **extra,
        },
    )


if __name__ == "__main__":
    main()
