"""Checkpoint housekeeping: decide (pure) what to keep, extend or delete, then apply it.

Planning never talks to the service, so a dry run is just `plan_housekeeping` without
`apply_plan`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from prefect_tinker.checkpoints.listing import is_live
from prefect_tinker.checkpoints.state import CheckpointLike, CheckpointState
from prefect_tinker.paths import CheckpointType, TinkerPath

if TYPE_CHECKING:
    import tinker

Action = Literal["keep", "extend_ttl", "delete"]


@dataclass(frozen=True)
class PlannedAction:
    """One checkpoint's fate, with the reason shown in the housekeeping table."""

    tinker_path: str
    action: Action
    reason: str
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class HousekeepingPlan:
    actions: tuple[PlannedAction, ...]

    def of(self, action: Action) -> list[PlannedAction]:
        return [a for a in self.actions if a.action == action]

    @property
    def deletes(self) -> list[PlannedAction]:
        return self.of("delete")

    @property
    def extensions(self) -> list[PlannedAction]:
        return self.of("extend_ttl")

    def rows(self) -> list[dict[str, str]]:
        """Table rows (path, action, ttl, reason) for an artifact or a CLI table."""
        return [
            {
                "checkpoint": a.tinker_path,
                "action": a.action,
                "ttl_seconds": "" if a.ttl_seconds is None else str(a.ttl_seconds),
                "reason": a.reason,
            }
            for a in self.actions
        ]


@dataclass(frozen=True)
class AppliedAction:
    tinker_path: str
    action: Action
    outcome: Literal["done", "already gone"]


def plan_housekeeping(
    checkpoints: Sequence[CheckpointLike],
    *,
    keep_last: int = 1,
    keep_paths: Iterable[str] = (),
    extend_ttl: int | None = None,
    checkpoint_types: Iterable[CheckpointType] = ("training",),
    now: datetime | None = None,
) -> HousekeepingPlan:
    """Keep the newest `keep_last` checkpoints of each run_key, final and published ones and
    `keep_paths`; delete the rest of the managed `checkpoint_types`. Kept checkpoints that
    expire within `extend_ttl` seconds get their TTL set to `extend_ttl`.

    Checkpoints are grouped by the run_key in their metadata (a resumed run spans several
    training runs), else by training run. Expired checkpoints are left out.

    Example:
        >>> plan = plan_housekeeping(list_run_checkpoints(rest, "my-run"),  # doctest: +SKIP
        ...                          keep_last=2, extend_ttl=30 * 86400)
        >>> [(a.tinker_path, a.action) for a in plan.actions]  # doctest: +SKIP
    """
    if keep_last < 0:
        raise ValueError(f"keep_last={keep_last} is negative; use 0 or more.")
    keep = {str(TinkerPath.parse(p)) for p in keep_paths}
    managed = set(checkpoint_types)
    now = now or datetime.now(UTC)
    live = [cp for cp in checkpoints if is_live(cp, now)]

    groups: dict[str, list[CheckpointLike]] = defaultdict(list)
    for cp in live:
        if cp.checkpoint_type in managed:
            groups[_group_of(cp)].append(cp)
    newest: set[str] = set()
    for group in groups.values():
        group.sort(key=_age_order)
        newest.update(cp.tinker_path for cp in group[len(group) - keep_last :] if keep_last)

    actions = []
    for cp in sorted(live, key=lambda c: (_group_of(c), _age_order(c))):
        reason = _reason_to_keep(cp, managed, keep, newest, keep_last)
        if reason is None:
            actions.append(PlannedAction(cp.tinker_path, "delete", "superseded"))
        elif _expires_before(cp, now, extend_ttl):
            actions.append(PlannedAction(cp.tinker_path, "extend_ttl", reason, extend_ttl))
        else:
            actions.append(PlannedAction(cp.tinker_path, "keep", reason))
    return HousekeepingPlan(tuple(actions))


def apply_plan(rest: tinker.RestClient, plan: HousekeepingPlan) -> list[AppliedAction]:
    """Carry out a plan's TTL extensions and deletions (all submitted at once).

    Idempotent: a checkpoint already deleted counts as done ("already gone"), so a retried
    housekeeping task can apply the same plan again. Other errors are raised after every
    request has finished.
    """
    import tinker

    submitted = []
    for a in plan.actions:
        if a.action == "extend_ttl":
            future = rest.set_checkpoint_ttl_from_tinker_path(a.tinker_path, a.ttl_seconds)
            submitted.append((a, future))
        elif a.action == "delete":
            submitted.append((a, rest.delete_checkpoint_from_tinker_path(a.tinker_path)))
    applied, errors = [], []
    for a, future in submitted:
        try:
            future.result()
            applied.append(AppliedAction(a.tinker_path, a.action, "done"))
        except tinker.NotFoundError:
            applied.append(AppliedAction(a.tinker_path, a.action, "already gone"))
        except Exception as exc:  # collected so one failure does not hide the others' outcome
            errors.append(exc)
    if errors:
        raise errors[0]
    return applied


def _group_of(cp: CheckpointLike) -> str:
    run_key = (cp.user_metadata or {}).get("run_key")
    return f"run_key:{run_key}" if run_key else f"run:{TinkerPath.parse(cp.tinker_path).run_id}"


def _age_order(cp: CheckpointLike) -> tuple[int, datetime, str]:
    state = CheckpointState.from_metadata(cp.user_metadata)
    return (state.step if state else -1, cp.time, cp.tinker_path)


def _reason_to_keep(
    cp: CheckpointLike, managed: set[str], keep: set[str], newest: set[str], keep_last: int
) -> str | None:
    state = CheckpointState.from_metadata(cp.user_metadata)
    if cp.tinker_path in keep:
        return "listed in keep_paths"
    if cp.checkpoint_type not in managed:
        return f"{cp.checkpoint_type} checkpoints are not managed"
    if cp.public:
        return "published"
    if state is not None and state.final:
        return "final checkpoint of its run"
    if cp.tinker_path in newest:
        return f"one of the newest {keep_last} of {_group_of(cp)}"
    return None


def _expires_before(cp: CheckpointLike, now: datetime, extend_ttl: int | None) -> bool:
    if extend_ttl is None or cp.expires_at is None:
        return False
    return cp.expires_at < now + timedelta(seconds=extend_ttl)
