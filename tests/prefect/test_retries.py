"""Transient faults are retried to the same result; permanent errors fail at once."""

from __future__ import annotations

import pytest
from pipeline_helpers import adapter_digest, optim_steps_of, pipeline_params, training_requests
from prefect import flow

from prefect_tinker import sft_pipeline
from prefect_tinker.errors import ConfigurationError, UnknownModelError, is_transient
from prefect_tinker.local import FaultConfig
from prefect_tinker.tasks import create_training_run, set_checkpoint_ttl


@pytest.fixture
def recorded_events(monkeypatch):
    """Events emitted in this process, recorded instead of sent (Prefect's asserting client)."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    yield lambda: (worker.drain(), worker._client.events)[1]
    worker.drain()


def test_ten_percent_transient_faults_give_the_same_adapter(
    reference, credentials, chat_jsonl, local_tinker, recorded_events
):
    faults_before = sum(local_tinker.stats.faults.values())
    local_tinker.faults = FaultConfig(rate=0.1, seed=7, kinds=("503", "429", "drop"))
    try:
        result = sft_pipeline(credentials=credentials, **pipeline_params(chat_jsonl, "faulty"))
    finally:
        local_tinker.faults = FaultConfig()
    assert sum(local_tinker.stats.faults.values()) > faults_before, "no fault was injected"
    assert result.final_step == 4
    assert adapter_digest(result.adapter_dir) == adapter_digest(reference.result.adapter_dir)
    assert optim_steps_of(local_tinker, credentials, "faulty") >= 4

    saved = [e for e in recorded_events() if e.event == "tinker.checkpoint.saved"]
    assert [(e.payload["step"], e.payload["path"].rsplit("/", 1)[-1]) for e in saved] == [
        (2, "step-000002"),
        (4, "step-000004"),
    ]
    assert saved[-1].payload["path"] == result.final_checkpoint
    assert all(isinstance(e.payload["loss"], float) for e in saved)


def test_unknown_model_fails_before_training_without_retries(credentials, chat_jsonl, local_tinker):
    before = training_requests(local_tinker)
    asked = local_tinker.stats.requests["get_server_capabilities"]
    state = sft_pipeline(
        credentials=credentials,
        **pipeline_params(chat_jsonl, "bad-model", base_model="Qwen/Qwen3-9B"),
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(UnknownModelError, match="'Qwen/Qwen3-9B'.*did you mean 'Qwen/Qwen3-8B'"):
        state.result()
    assert local_tinker.stats.requests["get_server_capabilities"] == asked + 1
    assert training_requests(local_tinker) == before


def test_permanent_error_in_a_task_is_not_retried(credentials, local_tinker):
    @flow
    def create_bad_run() -> str:
        return create_training_run(credentials, base_model="no-such/model")

    assert create_training_run.retries > 0, "retries are configured; the condition refuses them"
    attempts = local_tinker.stats.requests["create_model"]
    state = create_bad_run(return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigurationError, match="refused the new training run of 'no-such/model'"):
        state.result()
    assert not is_transient(ConfigurationError())
    assert local_tinker.stats.requests["create_model"] == attempts + 1


def test_sdk_errors_reach_prefect_typed_and_without_the_request(credentials):
    """The SDK's exception holds the HTTP request with the X-API-Key header; Prefect pickles a
    failed task's exception into its result storage, so tasks must never let one through."""
    import pickle

    from prefect_tinker.errors import CheckpointNotFound

    missing = "tinker://no-such-session:train:0/weights/nothing"

    @flow
    def ttl_of_missing_checkpoint() -> str:
        return set_checkpoint_ttl(credentials, missing, 3600)

    state = ttl_of_missing_checkpoint(return_state=True)
    with pytest.raises(CheckpointNotFound, match="nothing") as error:
        state.result()
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert credentials.api_key.get_secret_value().encode() not in pickle.dumps(error.value)
