"""A flow process SIGKILLed right after a checkpoint, started again, finishes with the same
adapter bytes as an uninterrupted run, and the service applied every planned step once."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

from pipeline_helpers import adapter_digest, optim_steps_of, pipeline_params
from prefect.settings import PREFECT_API_URL
from pydantic import BaseModel

from prefect_tinker import sft_pipeline

CHILD = Path(__file__).with_name("crash_child.py")
DEADLINE_S = 240


def read_marker(proc: subprocess.Popen, marker: str, deadline_s: float) -> str:
    """The first stdout line of `proc` starting with `marker`, waiting at most `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    while (remaining := deadline - time.monotonic()) > 0:
        if not selector.select(timeout=remaining):
            break
        line = proc.stdout.readline()
        if line.startswith(marker):
            return line.strip()
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited with {proc.returncode} before {marker!r}")
    raise AssertionError(f"no {marker!r} from the child within {deadline_s} s")


def test_sigkill_after_a_checkpoint_then_restart_is_bit_identical(
    reference, credentials, chat_jsonl, local_tinker, tmp_path
):
    params = pipeline_params(chat_jsonl, "crashed")
    child_params = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in params.items()}
    # The key travels in the environment, not in the flow run's parameters.
    child_params["credentials"] = {"base_url": local_tinker.base_url}
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "TINKER_API_KEY": local_tinker.api_key,
    }
    stderr = (tmp_path / "child.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "1", json.dumps(child_params)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    try:
        marker = read_marker(proc, "CHECKPOINT", DEADLINE_S)
    finally:
        proc.kill()  # SIGKILL: no cleanup, no final state reported
        proc.wait(timeout=30)
    _, step, killed_at = marker.split()
    assert step == "2"
    assert optim_steps_of(local_tinker, credentials, "crashed") == 2

    resumed = sft_pipeline(credentials=credentials, **params)

    assert resumed.resumed_from == killed_at
    assert resumed.steps_run == 2 and resumed.final_step == 4
    assert optim_steps_of(local_tinker, credentials, "crashed") == 4, "a step was repeated"
    assert adapter_digest(resumed.adapter_dir) == adapter_digest(reference.result.adapter_dir)
