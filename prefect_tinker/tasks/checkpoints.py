"""Tasks for training runs and checkpoints on the Tinker service (REST calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_tinker.blocks import TinkerCredentials
from prefect_tinker.export.publish import delete as delete_on_service
from prefect_tinker.export.publish import publish as publish_on_service
from prefect_tinker.export.publish import set_ttl as set_ttl_on_service
from prefect_tinker.export.publish import unpublish as unpublish_on_service
from prefect_tinker.retries import RETRY_OPTIONS, typed_sdk_errors
from prefect_tinker.tasks.results import CheckpointInfo, TrainingRunInfo

if TYPE_CHECKING:
    from prefect_tinker.checkpoints import HousekeepingPlan

_PAGE = 100


@task(name="List Tinker training runs", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the list of training runs")
def list_training_runs(
    credentials: TinkerCredentials, limit: int = 1000, project_id: str | None = None
) -> list[TrainingRunInfo]:
    """Training runs you own, newest first as the service orders them, up to `limit`.

    Example:
        ```python
        runs = list_training_runs(TinkerCredentials.load("BLOCK_NAME"))
        ```
    """
    rest = credentials.get_rest_client()
    runs: list[TrainingRunInfo] = []
    while len(runs) < limit:
        page = rest.list_training_runs(
            limit=min(_PAGE, limit - len(runs)), offset=len(runs), project_id=project_id
        ).result()
        runs.extend(TrainingRunInfo.from_sdk(r) for r in page.training_runs)
        if len(page.training_runs) == 0 or len(runs) >= page.cursor.total_count:
            break
    return runs


@task(name="List Tinker checkpoints", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("training run", "run_id")
def list_checkpoints(credentials: TinkerCredentials, run_id: str) -> list[CheckpointInfo]:
    """Checkpoints of one training run (training, sampler and external), oldest first."""
    response = credentials.get_rest_client().list_checkpoints(run_id).result()
    return sorted((CheckpointInfo.from_sdk(c) for c in response.checkpoints), key=lambda c: c.time)


@task(name="Find latest Tinker checkpoint", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the checkpoints of run_key", "run_key")
def latest_checkpoint(credentials: TinkerCredentials, run_key: str) -> str | None:
    """Tinker path of the newest live resumable checkpoint of `run_key`, or None.

    Asks the service, never a local file, so it works from any worker.
    """
    from prefect_tinker.checkpoints import find_resume_point

    point = find_resume_point(credentials.get_rest_client(), run_key)
    return None if point is None else str(point.tinker_path)


@task(name="Set Tinker checkpoint TTL", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def set_checkpoint_ttl(
    credentials: TinkerCredentials, tinker_path: str, ttl_seconds: int | None
) -> str:
    """Expire the checkpoint `ttl_seconds` from now (3600 s to 10 years); None keeps it forever."""
    return set_ttl_on_service(credentials.get_rest_client(), tinker_path, ttl_seconds)


@task(name="Delete Tinker checkpoint", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def delete_checkpoint(credentials: TinkerCredentials, tinker_path: str) -> str:
    """Delete one checkpoint; returns its path."""
    return delete_on_service(credentials.get_rest_client(), tinker_path)


@task(name="Publish Tinker checkpoint", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def publish_checkpoint(credentials: TinkerCredentials, tinker_path: str) -> str:
    """Make a checkpoint public (readable by other Tinker users); idempotent."""
    return publish_on_service(credentials.get_rest_client(), tinker_path)


@task(name="Unpublish Tinker checkpoint", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def unpublish_checkpoint(credentials: TinkerCredentials, tinker_path: str) -> str:
    """Make a published checkpoint private again; idempotent."""
    return unpublish_on_service(credentials.get_rest_client(), tinker_path)


@task(name="Apply Tinker checkpoint housekeeping", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the housekeeping plan")
def apply_housekeeping(
    credentials: TinkerCredentials, plan: HousekeepingPlan
) -> list[dict[str, str]]:
    """Carry out a housekeeping plan's TTL extensions and deletions; idempotent on retry.

    Returns one row per change: checkpoint, action, outcome ("done" or "already gone").
    """
    from prefect_tinker.checkpoints import apply_plan

    applied = apply_plan(credentials.get_rest_client(), plan)
    return [
        {"checkpoint": a.tinker_path, "action": a.action, "outcome": a.outcome} for a in applied
    ]
