"""`sft_pipeline` end to end on the local service: it learns, checkpoints, evaluates and exports;
a re-run sends no training requests; secrets stay out of Prefect's records."""

from __future__ import annotations

import math
from pathlib import Path

from pipeline_helpers import adapter_digest, pipeline_params, training_requests
from prefect.client.orchestration import get_client

from prefect_tinker import sft_pipeline
from prefect_tinker.paths import TinkerPath


def test_trains_checkpoints_evaluates_and_exports(reference, credentials):
    result = reference.result
    assert result.final_step == 4 and result.steps_run == 4 and result.resumed_from is None
    assert [m["step"] for m in result.metrics] == [1, 2, 3, 4]
    assert result.final_loss < result.first_loss, "loss should fall"
    assert result.eval_nll is not None and math.isfinite(result.eval_nll)
    assert TinkerPath.parse(result.final_checkpoint).checkpoint_type == "training"
    assert result.final_checkpoint.endswith("/weights/step-000004")
    assert TinkerPath.parse(result.sampler_path).checkpoint_type == "sampler"
    assert TinkerPath.parse(result.external_path).checkpoint_type == "external"
    adapter = Path(result.adapter_dir)
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0


def test_every_checkpoint_is_on_the_service(reference):
    final = reference.result.final_checkpoint
    step_2 = final.rsplit("/", 1)[0] + "/step-000002"
    assert {final, step_2} <= reference.checkpoints


def test_rerun_sends_no_training_requests_and_returns_the_same_paths(
    reference, credentials, chat_jsonl, local_tinker
):
    first = reference.result
    before = training_requests(local_tinker)
    state = sft_pipeline(
        credentials=credentials, **pipeline_params(chat_jsonl, "reference"), return_state=True
    )
    again = state.result()
    assert training_requests(local_tinker) == before
    assert again.steps_run == 0
    for field in ("run_id", "final_checkpoint", "sampler_path", "external_path", "adapter_dir"):
        assert getattr(again, field) == getattr(first, field), field
    assert again.eval_nll == first.eval_nll
    assert adapter_digest(again.adapter_dir) == adapter_digest(first.adapter_dir)

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.parameters["credentials"]  # the block is recorded ...
    assert local_tinker.api_key not in str(run.parameters)  # ... without its key


def test_progress_artifact_reaches_100_percent(reference):
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    progress = [a for a in artifacts if a.key == "training-reference" and a.type == "progress"]
    assert progress and progress[-1].data == 100.0


def test_usable_as_a_subflow(reference, credentials, chat_jsonl):
    from prefect import flow

    @flow
    def my_flow() -> str:
        return sft_pipeline(
            credentials=credentials, **pipeline_params(chat_jsonl, "reference")
        ).final_checkpoint

    assert my_flow() == reference.result.final_checkpoint
