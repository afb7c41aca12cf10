"""Prefect-layer fixtures: a real temporary Prefect server, blocks on the local service, a chat
dataset, and one reference pipeline run that other tests compare against."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

# Short Prefect-level retry delays (the SDK retries most faults itself before they get here).
os.environ.setdefault("PREFECT_TINKER_RETRY_DELAY_SECONDS", "0.2")

BASE_MODEL = "Qwen/Qwen3-0.6B"  # the local engine's tiny seeded stand-in
TRAINING_ROUTES = ("create_model", "load_weights", "forward_backward", "optim_step", "save_weights")
WORDS = ["tinker", "prefect", "adapter", "lora", "flow", "task", "block", "model"]


def pipeline_params(dataset: Path, run_key: str, **overrides) -> dict:
    """4 steps of batch 2, a checkpoint every 2 steps, a quarter of the data held out."""
    from prefect_tinker.flows.sft import CheckpointPolicy, EvalOptions

    params = {
        "base_model": BASE_MODEL,
        "dataset": str(dataset),
        "lora": {"rank": 4, "seed": 0},
        "learning_rate": 2e-2,
        "lr_schedule": "linear",
        "batch_size": 2,
        "num_epochs": 2,
        "max_steps": 4,
        "max_length": 48,
        "checkpoints": CheckpointPolicy(every=2, ttl_seconds=3600),
        "evaluation": EvalOptions(holdout_fraction=0.25),
        "run_key": run_key,
        "seed": 0,
    }
    params.update(overrides)
    return params


def training_requests(local_tinker) -> dict[str, int]:
    return {route: local_tinker.stats.requests[route] for route in TRAINING_ROUTES}


def adapter_digest(adapter_dir: str | Path) -> str:
    """sha256 of the adapter weights file of a downloaded adapter directory."""
    return hashlib.sha256(
        (Path(adapter_dir) / "adapter_model.safetensors").read_bytes()
    ).hexdigest()


def optim_steps_of(local_tinker, credentials, run_key: str) -> int:
    """Optimizer steps the service applied over every training run of `run_key`."""
    from prefect_tinker.checkpoints import list_runs

    runs = list_runs(credentials.get_rest_client(), run_key)
    return sum(local_tinker.stats.optim_steps[r.training_run_id] for r in runs)


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """A temporary Prefect server (real API, SQLite) for the whole session; no flow heartbeat
    (it joins a 1 s-granular thread at the end of every flow run)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


@pytest.fixture(scope="session")
def credentials(local_tinker):
    from prefect_tinker import TinkerCredentials

    return TinkerCredentials(base_url=local_tinker.base_url, api_key=local_tinker.api_key)


@pytest.fixture(scope="session")
def chat_jsonl(tmp_path_factory) -> Path:
    """16 short conversations (reverse a word), deterministic."""
    path = tmp_path_factory.mktemp("data") / "reverse.jsonl"
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Reverse: {word}"},
                    {"role": "assistant", "content": word[::-1]},
                ]
            }
        )
        for word in WORDS * 2
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def reference(credentials, chat_jsonl, local_tinker):
    """One uninterrupted, fault-free pipeline run; crash, retry and cache tests must match it."""
    from prefect_tinker import sft_pipeline

    before = training_requests(local_tinker)
    result = sft_pipeline(credentials=credentials, **pipeline_params(chat_jsonl, "reference"))
    return result, before, training_requests(local_tinker)
