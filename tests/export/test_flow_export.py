"""The `export_checkpoint` flow on a real temporary Prefect server and the local service."""

from __future__ import annotations

import time

import pytest
from hubserver import HubServer
from pydantic import SecretStr

from prefect_tinker import HuggingFaceCredentials, TinkerCredentials
from prefect_tinker.export import Manifest
from prefect_tinker.export.card import card_metadata
from prefect_tinker.flows.export import ADAPTER_EXPORTED, export_checkpoint


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    """A temporary Prefect server for this module (the Prefect tests have their own)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


@pytest.fixture
def events(monkeypatch):
    """Every event the export flow emits (still sent to Prefect as well)."""
    import prefect_tinker.flows.export as module

    seen: list[dict] = []
    real = module.emit_event

    def record(**kwargs):
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(module, "emit_event", record)
    return seen


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs}


def _artifacts(flow_run_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.type: a.data for a in found}


def test_export_downloads_validates_pushes_publishes_then_reruns_for_free(
    trained, local_tinker, tmp_path, monkeypatch, events
):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    creds = TinkerCredentials(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    with HubServer() as hub:
        hf = HuggingFaceCredentials(token=SecretStr("hf_flow_token"), endpoint=hub.url)
        params = {
            "credentials": creds,
            "tinker_path": trained.state_path,
            "dest": str(tmp_path / "adapter"),
            "hf_repo_id": "me/flow-adapter",
            "hf_credentials": hf,
            "publish": True,
            "training_metrics": {"loss": 0.5},
        }
        exports_before = local_tinker.stats.requests["save_weights_external"]
        t0 = time.monotonic()
        first_state = export_checkpoint(**params, return_state=True)
        first_s = time.monotonic() - t0
        first = first_state.result()
        served = local_tinker.stats.bytes_served
        t0 = time.monotonic()
        second_state = export_checkpoint(**params, return_state=True)
        second_s = time.monotonic() - t0
        second = second_state.result()
        third_state = export_checkpoint(**params, return_state=True)
        print(f"export_checkpoint: first {first_s:.2f}s, re-run {second_s:.2f}s")

        readme = hub.state.repos["me/flow-adapter"].commits[-1][1]["README.md"].decode()

    # First run: a full export.
    # age-encrypted on the wire, so a little more than the decrypted files
    assert first.bytes_transferred >= sum(f["size"] for f in first.files) > 0
    assert {f["path"] for f in first.files} == {"adapter_config.json", "adapter_model.safetensors"}
    assert first.adapter.rank == 4 and first.hub.pushed and first.published
    assert first.external_path and "/external_weights/step-3-export" in first.external_path
    assert Manifest.read(tmp_path / "adapter").tinker_path == first.external_path
    assert second.external_path == first.external_path
    assert card_metadata(readme)["tinker_path"] == trained.state_path
    assert "| loss | 0.5 |" in readme

    # Re-run: nothing transferred, nothing exported again, nothing pushed.
    assert second.bytes_transferred == 0
    assert local_tinker.stats.bytes_served == served
    assert local_tinker.stats.requests["save_weights_external"] == exports_before + 1
    assert not second.hub.pushed and second.hub.commit_oid == first.hub.commit_oid
    # The run that found the target intact primed the cache; later runs are cache hits.
    third = _task_states(third_state.state_details.flow_run_id)
    assert third["Download Tinker checkpoint"] == "Cached"
    assert third_state.result().bytes_transferred == 0
    assert second_s < first_s

    # Artifacts and events.
    artifacts = _artifacts(first_state.state_details.flow_run_id)
    assert f"`{trained.state_path}`" in artifacts["markdown"]
    table = artifacts["table"]
    assert "adapter_model.safetensors" in str(table) and first.files[0]["sha256"] in str(table)
    assert "progress" in artifacts
    exported = [e for e in events if e["event"] == ADAPTER_EXPORTED]
    assert len(exported) == 3
    assert exported[0]["payload"]["tinker_path"] == trained.state_path
    assert exported[1]["payload"]["bytes_transferred"] == 0


def test_damaged_download_is_repaired_on_rerun(trained, local_tinker, tmp_path):
    creds = TinkerCredentials(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    dest = tmp_path / "adapter"
    first = export_checkpoint(creds, trained.external_path, dest=str(dest))
    weights = dest / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")

    again = export_checkpoint(creds, trained.external_path, dest=str(dest))

    size = next(f["size"] for f in first.files if f["path"] == "adapter_model.safetensors")
    assert again.bytes_transferred == size
    assert Manifest.read(dest).bad_files(dest) == []
