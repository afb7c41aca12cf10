"""`checkpoint_housekeeping`: keep the checkpoints that matter, extend their TTLs, delete the rest.

Planning is pure (`prefect_tinker.checkpoints.plan_housekeeping`); the flow lists checkpoints
on the service, plans, shows the plan as a table artifact, and applies it unless `dry_run`.
"""

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from prefect_tinker.blocks import TinkerCredentials
from prefect_tinker.paths import CheckpointType, TinkerPath
from prefect_tinker.tasks.checkpoints import (
    apply_housekeeping,
    list_checkpoints,
    list_training_runs,
)


class HousekeepingResult(BaseModel):
    """What the housekeeping flow decided (and, unless a dry run, did)."""

    dry_run: bool
    kept: list[str] = Field(default_factory=list)
    extended: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    rows: list[dict[str, str]] = Field(default_factory=list)


@flow(name="tinker-checkpoint-housekeeping", validate_parameters=True)
def checkpoint_housekeeping(
    credentials: TinkerCredentials | None = None,
    run_keys: list[str] | None = None,
    keep_last: int = 2,
    keep_paths: list[str] | None = None,
    extend_ttl_seconds: int | None = 30 * 24 * 3600,
    checkpoint_types: list[CheckpointType] | None = None,
    dry_run: bool = True,
) -> HousekeepingResult:
    """Keep the newest `keep_last` checkpoints of each run (plus final, published and
    `keep_paths` ones), extend kept TTLs to `extend_ttl_seconds`, delete superseded ones.

    Args:
        run_keys: only these runs (by run_key); unset: every training run you own.
        checkpoint_types: which kinds may be deleted; default only "training" checkpoints.
        dry_run: plan and report only (the default); set False to apply.

    Example:
        ```python
        from prefect_tinker import checkpoint_housekeeping

        result = checkpoint_housekeeping(keep_last=1, dry_run=False)
        print(result.deleted)
        ```
    """
    from prefect_tinker.checkpoints import plan_housekeeping

    logger = get_run_logger()
    credentials = credentials or TinkerCredentials(base_url="local")
    keep = [str(TinkerPath.parse(p)) for p in keep_paths or []]  # InvalidTinkerPath up front
    runs = list_training_runs(credentials)
    if run_keys is not None:
        wanted = set(run_keys)
        runs = [r for r in runs if r.user_metadata.get("run_key") in wanted]
    checkpoints = [cp for run in runs for cp in list_checkpoints(credentials, run.run_id)]
    plan = plan_housekeeping(
        checkpoints,
        keep_last=keep_last,
        keep_paths=keep,
        extend_ttl=extend_ttl_seconds,
        checkpoint_types=tuple(checkpoint_types or ("training",)),
    )
    outcomes: dict[str, str] = {}
    if not dry_run:
        outcomes = {r["checkpoint"]: r["outcome"] for r in apply_housekeeping(credentials, plan)}
    rows = [
        {**row, "outcome": "dry run" if dry_run else outcomes.get(row["checkpoint"], "kept")}
        for row in plan.rows()
    ]
    create_table_artifact(
        rows,
        key="tinker-checkpoint-housekeeping",
        description=(
            f"{'Dry run: ' if dry_run else ''}{len(plan.deletes)} to delete, "
            f"{len(plan.extensions)} TTLs to extend, over {len(runs)} training runs"
        ),
    )
    logger.info(
        "%s%d checkpoints deleted, %d TTLs extended, %d kept",
        "dry run: " if dry_run else "",
        len(plan.deletes),
        len(plan.extensions),
        len(plan.of("keep")),
    )
    return HousekeepingResult(
        dry_run=dry_run,
        kept=[a.tinker_path for a in plan.of("keep")],
        extended=[a.tinker_path for a in plan.extensions],
        deleted=[a.tinker_path for a in plan.deletes],
        rows=rows,
    )
