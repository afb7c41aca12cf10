"""Prefect-layer fixtures: a real temporary Prefect server, blocks on the local service, a chat
dataset, and one reference pipeline run that other tests compare against."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pipeline_helpers import WORDS, Reference, pipeline_params, training_requests

# Short Prefect-level retry delays (the SDK retries most faults itself before they get here).
os.environ.setdefault("PREFECT_TINKER_RETRY_DELAY_SECONDS", "0.2")


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """A temporary Prefect server (real API, SQLite) for the whole session; no flow heartbeat
    (it joins a 1 s-granular thread at the end of every flow run)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


@pytest.fixture(scope="session")
def credentials(local_tinker):
    from prefect_tinker import TinkerCredentials

    return TinkerCredentials(base_url=local_tinker.base_url, api_key=local_tinker.api_key)


@pytest.fixture(scope="session")
def chat_jsonl(tmp_path_factory) -> Path:
    """16 short conversations (reverse a word), deterministic."""
    path = tmp_path_factory.mktemp("data") / "reverse.jsonl"
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Reverse: {word}"},
                    {"role": "assistant", "content": word[::-1]},
                ]
            }
        )
        for word in WORDS * 2
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def reference(credentials, chat_jsonl, local_tinker):
    """One uninterrupted, fault-free pipeline run; crash, retry and cache tests must match it."""
    from prefect_tinker import sft_pipeline
    from prefect_tinker.checkpoints import list_run_checkpoints

    before = training_requests(local_tinker)
    result = sft_pipeline(credentials=credentials, **pipeline_params(chat_jsonl, "reference"))
    after = training_requests(local_tinker)
    listed = list_run_checkpoints(credentials.get_rest_client(), "reference")
    return Reference(result, before, after, frozenset(cp.tinker_path for cp in listed))
