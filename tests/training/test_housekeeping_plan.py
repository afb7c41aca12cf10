"""plan_housekeeping: which checkpoints to keep, extend or delete (pure; no service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import tinker

from prefect_tinker.checkpoints import CheckpointState, plan_housekeeping
from prefect_tinker.errors import InvalidTinkerPath

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86400


def checkpoint(
    run, name, step=None, *, total=10, run_key="k", kind="weights", expires=None, public=False
):
    metadata = None
    if step is not None:
        metadata = CheckpointState(run_key, step, total, 0, step, "fp", "ch", step == total)
        metadata = metadata.to_metadata()
    cp_type = {"weights": "training", "sampler_weights": "sampler"}[kind]
    return tinker.Checkpoint(
        checkpoint_id=f"{kind}/{name}",
        checkpoint_type=cp_type,
        time=NOW - timedelta(hours=100 - (step or 0)),
        tinker_path=f"tinker://{run}/{kind}/{name}",
        user_metadata=metadata,
        expires_at=expires,
        public=public,
    )


def actions(plan):
    return {a.tinker_path.rsplit("/", 1)[-1]: a.action for a in plan.actions}


def test_keeps_newest_per_run_key_across_resumed_runs():
    cps = [
        checkpoint("r0", "step-2", 2),
        checkpoint("r0", "step-4", 4),
        checkpoint("r1", "step-6", 6),  # r1 resumed r0: same run_key
        checkpoint("r1", "step-8", 8),
    ]
    plan = plan_housekeeping(cps, keep_last=2, now=NOW)
    assert actions(plan) == {
        "step-2": "delete",
        "step-4": "delete",
        "step-6": "keep",
        "step-8": "keep",
    }
    assert [a.reason for a in plan.deletes] == ["superseded", "superseded"]


def test_final_published_listed_and_unmanaged_checkpoints_survive():
    cps = [
        checkpoint("r0", "step-2", 2),
        checkpoint("r0", "step-4", 4, public=True),
        checkpoint("r0", "step-6", 6),
        checkpoint("r0", "step-8", 8),
        checkpoint("r0", "step-10", 10),  # final
        checkpoint("r0", "export", kind="sampler_weights"),
    ]
    plan = plan_housekeeping(cps, keep_last=0, keep_paths=["tinker://r0/weights/step-6"], now=NOW)
    assert actions(plan) == {
        "step-2": "delete",
        "step-4": "keep",
        "step-6": "keep",
        "step-8": "delete",
        "step-10": "keep",
        "export": "keep",
    }
    reasons = {a.tinker_path.rsplit("/", 1)[-1]: a.reason for a in plan.actions}
    assert reasons["step-10"] == "final checkpoint of its run"
    assert reasons["export"] == "sampler checkpoints are not managed"


def test_kept_checkpoints_expiring_soon_get_extended_never_shortened():
    cps = [
        checkpoint("r0", "step-2", 2, expires=NOW + timedelta(days=1)),
        checkpoint("r0", "step-4", 4, expires=NOW + timedelta(days=90)),
        checkpoint("r0", "step-6", 6, expires=None),
        checkpoint("r0", "step-8", 8, expires=NOW + timedelta(days=2)),
    ]
    plan = plan_housekeeping(cps, keep_last=3, extend_ttl=30 * DAY, now=NOW)
    assert actions(plan) == {
        "step-2": "delete",
        "step-4": "keep",
        "step-6": "keep",
        "step-8": "extend_ttl",
    }
    assert plan.extensions[0].ttl_seconds == 30 * DAY


def test_expired_checkpoints_are_left_out_and_groups_fall_back_to_the_run():
    cps = [
        checkpoint("r0", "step-2", 2, expires=NOW - timedelta(seconds=1)),
        checkpoint("r0", "step-4", 4),
        checkpoint("other", "manual-a"),
        checkpoint("other", "manual-b"),
    ]
    plan = plan_housekeeping(cps, keep_last=1, now=NOW)
    assert actions(plan) == {"step-4": "keep", "manual-a": "delete", "manual-b": "keep"}
    assert plan.rows()[0].keys() == {"checkpoint", "action", "ttl_seconds", "reason"}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="keep_last=-1"):
        plan_housekeeping([], keep_last=-1)
    with pytest.raises(InvalidTinkerPath):
        plan_housekeeping([], keep_paths=["tinker://r0/weights"])
