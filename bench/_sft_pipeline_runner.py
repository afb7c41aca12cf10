"""The `sft_pipeline` column of bench/train_throughput.py.

It runs the pipeline's training step as the pipeline does: the `train` task inside a Prefect
flow run (progress artifact updated every step, per-step run logs, a checkpoint event), on the
same data and config as the other columns, against a temporary Prefect server started once.
Returns the task's step-loop time (first submission to last result), like the other runners.
"""

from __future__ import annotations

import atexit
import contextlib
from typing import Any

_PREFECT = contextlib.ExitStack()
_STARTED = False


def _ensure_prefect() -> None:
    global _STARTED
    if not _STARTED:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        _PREFECT.enter_context(temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        _PREFECT.enter_context(prefect_test_harness(server_startup_timeout=120))
        atexit.register(_PREFECT.close)
        _STARTED = True


def run_sft_pipeline(setup: Any) -> float:
    """Steps through the Prefect layer: `prefect_tinker.tasks.train` in a flow run."""
    from prefect import flow

    from prefect_tinker import TinkerCredentials
    from prefect_tinker.tasks import train

    _ensure_prefect()
    credentials = TinkerCredentials(base_url=setup.base_url, api_key=setup.api_key)
    config = setup.config(setup.new_run_key("sft-pipeline"))

    @flow(name="bench-sft-pipeline-train")
    def bench_flow():
        return train(credentials, setup.dataset, config)

    summary = bench_flow()
    assert summary.steps_run == setup.steps
    return summary.metrics[-1]["elapsed_s"]
