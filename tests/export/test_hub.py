"""Hub push at the HTTP boundary: a local server answers the Hub endpoints and records calls."""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path

import pytest
from hubserver import HubServer
from pydantic import SecretStr

from prefect_tinker.errors import HubError
from prefect_tinker.export import FileEntry, Manifest
from prefect_tinker.export.card import ModelCard, card_metadata
from prefect_tinker.export.hub import push_to_hub

TOKEN = "hf_TEST_SECRET_TOKEN_123"
PATH = "tinker://run-a:train:0/weights/final"


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    """Tests run with HF_HUB_OFFLINE=1; the mock Hub is local, so allow requests to it."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture
def adapter(tiny_adapter, tmp_path) -> Path:
    dest = Path(shutil.copytree(tiny_adapter, tmp_path / "adapter"))
    Manifest(PATH, (FileEntry("adapter_config.json", 1, "ab"),)).write(dest)
    return dest


def _card(path: str = PATH) -> ModelCard:
    return ModelCard(
        path,
        base_model="Qwen/Qwen3-0.6B",
        training_metrics={"loss": 0.4321, "eval_nll": 1.25},
        dataset_fingerprint="fp-0123abcd",
    )


def _commit_files(hub: HubServer) -> dict[str, bytes]:
    commit = next(r for r in hub.state.requests if "/commit/" in r.path)
    lines = [json.loads(x) for x in commit.body.decode().splitlines()]
    return {
        x["value"]["path"]: base64.b64decode(x["value"]["content"])
        for x in lines
        if x["key"] == "file"
    }


def test_first_push_creates_repo_commits_adapter_and_card_and_tags(hub, adapter, caplog):
    caplog.set_level(logging.DEBUG)
    result = push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url,
                         card=_card())  # fmt: skip

    assert result.pushed and result.revision == "final"
    assert hub.state.calls() == [
        "POST /api/repos/create",
        "GET /api/models/me/adapter/refs",
        "GET /api/models/me/adapter",
        "POST /api/validate-yaml",
        "POST /api/models/me/adapter/preupload/main",
        "POST /api/models/me/adapter/commit/main",
        f"POST /api/models/me/adapter/tag/{result.commit_oid}",
    ]
    create = json.loads(hub.state.requests[0].body)
    assert create["name"] == "adapter" and hub.state.repos["me/adapter"].private
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.state.requests)
    assert json.loads(hub.state.requests[-1].body)["tag"] == "final"

    files = _commit_files(hub)
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert (
        files["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    )
    card = files["README.md"].decode()
    meta = card_metadata(card)
    assert meta["tinker_path"] == PATH
    assert meta["base_model"] == "Qwen/Qwen3-0.6B"
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "peft"
    assert meta["dataset_fingerprint"] == "fp-0123abcd"
    assert "| Rank | 4 |" in card and "| Alpha | 8 |" in card
    assert "down_proj, q_proj, v_proj" in card
    assert "| loss | 0.4321 |" in card and "| eval_nll | 1.25 |" in card
    assert hub.state.requests[0].headers["user-agent"].startswith("prefect-tinker/0.")
    assert TOKEN not in caplog.text


def test_same_checkpoint_twice_is_a_no_op(hub, adapter):
    first = push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url)
    n = len(hub.state.requests)

    again = push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url)

    assert not again.pushed and again.commit_oid == first.commit_oid
    later = [c.split(" ")[0] + " " + c.split(" ")[1] for c in hub.state.calls()[n:]]
    assert not any("/commit/" in c or "/tag/" in c for c in later)


def test_next_checkpoint_of_the_same_run_gets_its_own_revision(hub, adapter):
    push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url, card=_card())
    step = push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url,
                       card=_card("tinker://run-a:train:0/weights/step-20"))  # fmt: skip

    assert step.pushed and step.revision == "step-20"
    assert set(hub.state.repos["me/adapter"].tags) == {"final", "step-20"}


def test_repo_of_another_run_is_refused_unless_forced(hub, adapter):
    push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url, card=_card())
    other = _card("tinker://run-b:train:0/weights/final")

    with pytest.raises(HubError, match=r"another training run .*run-a.*force"):
        push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url, card=other,
                    revision="b-final")  # fmt: skip
    forced = push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint=hub.url,
                         card=other, revision="b-final", force=True)  # fmt: skip
    assert forced.pushed


def test_hub_errors_are_one_line_without_the_token(hub, adapter):
    with pytest.raises(HubError) as info:
        push_to_hub(adapter, "bad name with spaces/x", token=SecretStr(TOKEN), endpoint=hub.url)
    assert TOKEN not in str(info.value) and "\n" not in str(info.value)


def test_offline_mode_is_reported(adapter, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        push_to_hub(adapter, "me/adapter", token=SecretStr(TOKEN), endpoint="http://127.0.0.1:9")
