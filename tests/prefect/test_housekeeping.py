"""Housekeeping: a dry run changes nothing; applying keeps the newest and final checkpoints,
extends their TTLs and deletes the superseded ones; a table artifact shows what happened."""

from __future__ import annotations

from prefect.client.orchestration import get_client

from prefect_tinker import checkpoint_housekeeping
from prefect_tinker.checkpoints import list_run_checkpoints

TEN_DAYS = 10 * 24 * 3600


def training_checkpoints(credentials, run_key: str) -> dict[str, object]:
    listed = list_run_checkpoints(credentials.get_rest_client(), run_key)
    return {cp.tinker_path: cp for cp in listed if cp.checkpoint_type == "training"}


def test_dry_run_then_apply(reference, credentials):
    final = reference.result.final_checkpoint
    step_2 = final.rsplit("/", 1)[0] + "/step-000002"
    before = training_checkpoints(credentials, "reference")
    assert {final, step_2} <= set(before)

    dry = checkpoint_housekeeping(
        credentials=credentials,
        run_keys=["reference"],
        keep_last=1,
        extend_ttl_seconds=TEN_DAYS,
        dry_run=True,
    )
    assert dry.deleted == [step_2] and final in dry.kept + dry.extended
    assert training_checkpoints(credentials, "reference").keys() == before.keys()

    applied = checkpoint_housekeeping(
        credentials=credentials,
        run_keys=["reference"],
        keep_last=1,
        extend_ttl_seconds=TEN_DAYS,
        dry_run=False,
    )
    after = training_checkpoints(credentials, "reference")
    assert applied.deleted == [step_2] and set(after) == set(before) - {step_2}
    assert all(row["outcome"] in {"done", "kept"} for row in applied.rows)

    with get_client(sync_client=True) as client:
        tables = [a for a in client.read_artifacts() if a.key == "tinker-checkpoint-housekeeping"]
    assert len(tables) >= 2 and step_2 in str(tables[-1].data)
