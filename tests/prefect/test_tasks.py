"""The tasks one by one, composed in a user's own flow, on the reference run's checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pipeline_helpers import BASE_MODEL
from prefect import flow

from prefect_tinker.errors import InvalidTinkerPath
from prefect_tinker.paths import TinkerPath
from prefect_tinker.tasks import (
    create_training_run,
    get_server_capabilities,
    latest_checkpoint,
    list_checkpoints,
    list_training_runs,
    publish_checkpoint,
    sample,
    save_state,
    save_weights_for_sampler,
    set_checkpoint_ttl,
    unpublish_checkpoint,
)

TEN_DAYS = 10 * 24 * 3600


def test_tasks_compose_in_a_users_flow(reference, credentials):
    result = reference.result

    @flow
    def my_flow() -> dict:
        models = get_server_capabilities(credentials)
        runs = list_training_runs(credentials)
        latest = latest_checkpoint(credentials, "reference")
        set_checkpoint_ttl(credentials, result.final_checkpoint, TEN_DAYS)
        listed = {c.tinker_path: c for c in list_checkpoints(credentials, result.run_id)}
        publish_checkpoint(credentials, result.external_path)
        published = list_checkpoints(credentials, TinkerPath.parse(result.external_path).run_id)
        unpublish_checkpoint(credentials, result.external_path)
        samples = sample(
            credentials, "Reverse: lora", model_path=result.sampler_path, max_tokens=4, seed=0
        )
        run_id = create_training_run(credentials, from_checkpoint=result.final_checkpoint)
        copy = save_state(credentials, run_id, "copy-of-final")
        sampler = save_weights_for_sampler(credentials, run_id, "copy-sampler")
        return {
            "models": models,
            "runs": runs,
            "latest": latest,
            "listed": listed,
            "published": published,
            "samples": samples,
            "run_id": run_id,
            "copy": copy,
            "sampler": sampler,
        }

    out = my_flow()
    assert any(m.model_name == BASE_MODEL and m.trainable for m in out["models"])
    reference_run = next(r for r in out["runs"] if r.run_id == result.run_id)
    assert reference_run.user_metadata["run_key"] == "reference"
    assert out["latest"] == result.final_checkpoint
    expires = out["listed"][result.final_checkpoint].expires_at
    assert expires is not None
    assert abs(expires - (datetime.now(UTC) + timedelta(seconds=TEN_DAYS))) < timedelta(hours=1)
    assert any(c.tinker_path == result.external_path and c.public for c in out["published"])
    (only,) = out["samples"]
    assert len(only.tokens) >= 1 and isinstance(only.text, str)
    assert out["copy"] == f"tinker://{out['run_id']}/weights/copy-of-final"
    assert TinkerPath.parse(out["sampler"]).checkpoint_type == "sampler"


def test_tasks_refuse_paths_of_the_wrong_shape(credentials):
    with pytest.raises(InvalidTinkerPath, match="does not start with 'tinker://'"):
        set_checkpoint_ttl.fn(credentials, "weights/step-2", TEN_DAYS)
