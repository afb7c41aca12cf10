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
