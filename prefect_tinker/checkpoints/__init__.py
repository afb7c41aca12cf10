"""Checkpoints of training runs: loop state in metadata, listing by run_key, resume-point
discovery, and TTL / pruning housekeeping. Tinker paths themselves live in
`prefect_tinker.paths`.
"""

from prefect_tinker.checkpoints.housekeeping import (
    AppliedAction,
    HousekeepingPlan,
    PlannedAction,
    apply_plan,
    plan_housekeeping,
)
from prefect_tinker.checkpoints.listing import (
    ResumePoint,
    find_resume_point,
    is_live,
    list_run_checkpoints,
    list_runs,
)
from prefect_tinker.checkpoints.state import CheckpointLike, CheckpointState, run_metadata
from prefect_tinker.paths import TinkerPath

__all__ = [
    "AppliedAction",
    "CheckpointLike",
    "CheckpointState",
    "HousekeepingPlan",
    "PlannedAction",
    "ResumePoint",
    "TinkerPath",
    "apply_plan",
    "find_resume_point",
    "is_live",
    "list_run_checkpoints",
    "list_runs",
    "plan_housekeeping",
    "run_metadata",
]
