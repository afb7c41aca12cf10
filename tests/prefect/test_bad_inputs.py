"""Bad input fails before any training request, with a message naming the value and the fix."""

from __future__ import annotations

import pytest
from pipeline_helpers import pipeline_params, training_requests

from prefect_tinker import TinkerCredentials, checkpoint_housekeeping, sft_pipeline
from prefect_tinker.errors import (
    DatasetError,
    InvalidTinkerPath,
    MissingCredentialsError,
)


@pytest.fixture
def no_training(local_tinker):
    before = training_requests(local_tinker)
    yield
    assert training_requests(local_tinker) == before, "bad input reached training"


def run_failed(**params) -> BaseException:
    state = sft_pipeline(**params, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception) as info:
        state.result()
    return info.value


def test_empty_dataset(no_training, credentials, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    error = run_failed(credentials=credentials, **pipeline_params(empty, "empty"))
    assert isinstance(error, DatasetError)
    assert "empty.jsonl" in str(error)


def test_malformed_jsonl_names_file_and_line(no_training, credentials, chat_jsonl, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = chat_jsonl.read_text().splitlines()
    bad.write_text("\n".join([good[0], good[1], '{"messages": [', good[2]]) + "\n")
    error = run_failed(credentials=credentials, **pipeline_params(bad, "bad-json"))
    assert isinstance(error, DatasetError)
    assert f"{bad}:3:" in str(error)


def test_missing_dataset_file(no_training, credentials, tmp_path):
    error = run_failed(credentials=credentials, **pipeline_params(tmp_path / "nope.jsonl", "x"))
    assert isinstance(error, DatasetError) and "nope.jsonl" in str(error)


def test_missing_credentials(no_training, chat_jsonl, monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    creds = TinkerCredentials(base_url="http://127.0.0.1:9")
    error = run_failed(credentials=creds, **pipeline_params(chat_jsonl, "no-key"))
    assert isinstance(error, MissingCredentialsError) and "TINKER_API_KEY" in str(error)


@pytest.mark.parametrize(
    ("lora", "message"),
    [
        ({"rank": 0}, "rank 0"),
        ({"train_mlp": False, "train_attn": False, "train_unembed": False}, "trains nothing"),
    ],
)
def test_invalid_lora_config(no_training, credentials, chat_jsonl, lora, message):
    params = pipeline_params(chat_jsonl, "bad-lora", lora=lora)
    with pytest.raises(Exception, match=message):
        sft_pipeline(credentials=credentials, **params)


def test_bad_training_setting_is_named(no_training, credentials, chat_jsonl):
    from prefect_tinker.flows.sft import CheckpointPolicy

    params = pipeline_params(chat_jsonl, "bad-ttl", checkpoints=CheckpointPolicy(ttl_seconds=5))
    error = run_failed(credentials=credentials, **params)
    assert "checkpoint_ttl_seconds" in str(error) and "3600" in str(error)


def test_tinker_path_of_the_wrong_shape(no_training, credentials):
    state = checkpoint_housekeeping(
        credentials=credentials, keep_paths=["tinker://run-1/weights"], return_state=True
    )
    with pytest.raises(InvalidTinkerPath, match="2 parts after 'tinker://'"):
        state.result()
