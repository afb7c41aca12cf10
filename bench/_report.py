"""Shared output for the benchmarks: a readable table plus one machine-readable line.

Every benchmark ends with `report(...)`; `bench/run_all.py` collects the `BENCH_RESULT` lines.

Example:
    report("download", "1 GiB checkpoint, 4 files",
           figures={"ours MiB/s": 410.0, "urllib MiB/s": 190.0},
           ratios={"ours / sequential urllib": (2.16, ">= 1.5")})
"""

from __future__ import annotations

import json
import sys

MARKER = "BENCH_RESULT "


def report(
    name: str,
    setup: str,
    *,
    figures: dict[str, float],
    ratios: dict[str, tuple[float, str]],
) -> None:
    """Print the figures, the ratios with their targets, and the machine-readable line."""
    print(f"\n== {name}: {setup}")
    for label, value in figures.items():
        print(f"  {label:<40} {value:>14,.3f}")
    for label, (value, target) in ratios.items():
        print(f"  {label:<40} {value:>13.2f}x  (target {target})")
    payload = {
        "name": name,
        "setup": setup,
        "figures": figures,
        "ratios": {k: {"value": v, "target": t} for k, (v, t) in ratios.items()},
    }
    print(MARKER + json.dumps(payload), flush=True)
    sys.stdout.flush()
