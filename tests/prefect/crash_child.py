"""Run `sft_pipeline` and stop dead after the k-th checkpoint, for the crash-resume test.

Usage: python crash_child.py K PARAMS_JSON. After the k-th `tinker.checkpoint.saved` event
this prints `CHECKPOINT <step> <path>` and blocks inside the checkpoint callback until the
parent SIGKILLs it, so nothing past that checkpoint has been sent to the service.
"""

from __future__ import annotations

import json
import sys
import threading

import prefect_tinker.tasks.training as training_tasks
from prefect_tinker.flows.sft import sft_pipeline

crash_after = int(sys.argv[1])
params = json.loads(sys.argv[2])
emit = training_tasks.emit_checkpoint_saved
seen = 0


def emit_then_hang(path: str, step: int, loss: float | None, run_key: str, **extra) -> None:
    global seen
    emit(path, step, loss, run_key, **extra)
    seen += 1
    if seen == crash_after:
        print(f"CHECKPOINT {step} {path}", flush=True)
        threading.Event().wait()  # held here until SIGKILL


training_tasks.emit_checkpoint_saved = emit_then_hang
sft_pipeline(**params)
print("FINISHED", flush=True)
