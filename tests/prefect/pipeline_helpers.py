"""Helpers shared by the Prefect-layer tests: pipeline parameters, request counters, digests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

BASE_MODEL = "Qwen/Qwen3-0.6B"  # the local engine's tiny seeded stand-in
TRAINING_ROUTES = ("create_model", "load_weights", "forward_backward", "optim_step", "save_weights")
WORDS = ["tinker", "prefect", "adapter", "lora", "flow", "task", "block", "model"]


@dataclass(frozen=True)
class Reference:
    """The uninterrupted reference run, with the service's counters around it."""

    result: object  # SftResult
    requests_before: dict[str, int]
    requests_after: dict[str, int]
    checkpoints: frozenset[str]  # tinker paths of its run_key right after it finished


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
