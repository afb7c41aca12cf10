"""Fuzzing budget and counters shared by the fuzz modules and the session summary.

`PREFECT_TINKER_FUZZ_EXAMPLES` sets hypothesis' `max_examples` per property (default 25, so
the whole fuzz set stays well under a minute on 2 cores); every property counts the examples
it tried in `COUNTS`, and `tests/hardening/conftest.py` prints the totals at the end.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("PREFECT_TINKER_FUZZ_EXAMPLES", "25"))
COUNTS: Counter[str] = Counter()

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def tried(target: str) -> None:
    """Count one example tried against `target`."""
    COUNTS[target] += 1
