"""Transient faults are retried to the same result; permanent errors fail at once."""

from __future__ import annotations

import pytest
from pipeline_helpers import adapter_digest, optim_steps_of, pipeline_params, training_requests
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from prefect_tinker import sft_pipeline
from prefect_tinker.errors import UnknownModelError
from prefect_tinker.local import FaultConfig
from prefect_tinker.tasks import create_training_run


def test_ten_percent_transient_faults_give_the_same_adapter(
    reference, credentials, chat_jsonl, local_tinker
):
    local_tinker.faults = FaultConfig(rate=0.1, seed=7, kinds=("503", "429", "drop"))
    try:
        result = sft_pipeline(credentials=credentials, **pipeline_params(chat_jsonl, "faulty"))
        injected = sum(local_tinker.stats.faults.values())
    finally:
        local_tinker.faults = FaultConfig()
    assert injected > 0, "the run should have met injected faults"
    assert result.final_step == 4
    assert adapter_digest(result.adapter_dir) == adapter_digest(reference.result.adapter_dir)
    assert optim_steps_of(local_tinker, credentials, "faulty") >= 4


def _task_runs(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def test_unknown_model_fails_before_training_without_retries(credentials, chat_jsonl, local_tinker):
    before = training_requests(local_tinker)
    state = sft_pipeline(
        credentials=credentials,
        **pipeline_params(chat_jsonl, "bad-model", base_model="Qwen/Qwen3-9B"),
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(UnknownModelError, match="'Qwen/Qwen3-9B'.*did you mean"):
        state.result()
    runs = _task_runs(state.state_details.flow_run_id)
    assert [(r.name.rsplit("-", 1)[0], r.run_count) for r in runs] == [
        ("Get Tinker server capabilities", 1)
    ]
    assert training_requests(local_tinker) == before


def test_permanent_error_in_a_task_is_not_retried(credentials):
    @flow
    def create_bad_run() -> str:
        return create_training_run(credentials, base_model="no-such/model")

    state = create_bad_run(return_state=True)
    assert state.is_failed()
    (run,) = _task_runs(state.state_details.flow_run_id)
    assert run.run_count == 1 and run.state.is_failed()
