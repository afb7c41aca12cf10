"""Shared pieces of the hardening tests: tiny datums, peak RSS, a bounded wait."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

BASE_MODEL = "Qwen/Qwen3-0.6B"  # the local engine's tiny seeded stand-in
ALICE, BOB = "tml-test-alice", "tml-test-bob"


def tiny_datums(n: int, seq_len: int, seed: int) -> list:
    """`n` next-token datums of random ids (first two targets unweighted, like a prompt)."""
    import tinker

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens = [rng.randrange(10, 500) for _ in range(seq_len + 1)]
        out.append(
            tinker.Datum(
                model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "weights": [0.0, 0.0] + [1.0] * (seq_len - 2),
                },
            )
        )
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident set size now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(predicate: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll `predicate` (every 20 ms) until it is true; AssertionError after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.02)


class TinyDataset:
    """`n` short random next-token datums with a deterministic per-epoch shuffle."""

    def __init__(self, n: int = 4, seq_len: int = 12, seed: int = 0) -> None:
        self.train = tiny_datums(n, seq_len, seed)
        self.fingerprint = f"tiny-{n}-{seq_len}-{seed}".ljust(16, "0")

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list]:
        order = list(range(len(self.train)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        return [
            [self.train[i] for i in order[j : j + batch_size]]
            for j in range(0, len(order), batch_size)
        ]


DRILL_STEPS = 6  # 4 datums, batch 2, 3 epochs; a checkpoint every 2 steps


def drill_config(run_key: str):
    from prefect_tinker.training import TrainConfig

    return TrainConfig(
        run_key=run_key,
        base_model=BASE_MODEL,
        learning_rate=2e-2,
        lr_schedule="linear",
        batch_size=2,
        num_epochs=3,
        checkpoint_every=2,
        checkpoint_ttl_seconds=3600,
        lora={"rank": 4, "seed": 0},
    )


def drill_pipeline(base_url: str, api_key: str, run_key: str, dest: Path, on_trained=None):
    """Train (resuming the run_key's newest checkpoint), then export + download the adapter.

    Returns (TrainResult, sha256 of the downloaded adapter_model.safetensors).
    """
    import hashlib

    import tinker

    from prefect_tinker.export import download
    from prefect_tinker.training import train

    service = tinker.ServiceClient(base_url=base_url, api_key=api_key)
    rest = tinker.RestClient(base_url=base_url, api_key=api_key)
    try:
        result = train(service, TinyDataset(), drill_config(run_key), rest=rest)
        if on_trained is not None:
            on_trained(result)
        download(rest, result.final_state_path, dest, service=service, overwrite=True)
        digest = hashlib.sha256((dest / "adapter_model.safetensors").read_bytes()).hexdigest()
        return result, digest
    finally:
        service.close("success").result(timeout=60)


def run_key_checkpoints(base_url: str, api_key: str, run_key: str) -> set[str]:
    """Tinker paths of every checkpoint of every training run of `run_key`."""
    import tinker

    from prefect_tinker.checkpoints import list_run_checkpoints

    rest = tinker.RestClient(base_url=base_url, api_key=api_key)
    return {cp.tinker_path for cp in list_run_checkpoints(rest, run_key)}
