"""The export CLI against the local service: JSON and table output, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from prefect_tinker.cli import app


@pytest.fixture
def cli(local_tinker, monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", local_tinker.api_key)
    monkeypatch.setenv("TINKER_BASE_URL", local_tinker.base_url)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def _run_id(path: str) -> str:
    return path.removeprefix("tinker://").split("/")[0]


def test_runs_and_checkpoints_list_as_json(cli, trained):
    runs = json.loads(cli("runs", "list", "--limit", "1000", "--format", "json").stdout)
    run_id = _run_id(trained.state_path)
    assert run_id in {r["run_id"] for r in runs}

    result = cli("checkpoints", "list", run_id, "--format", "json")
    paths = {c["tinker_path"]: c["type"] for c in json.loads(result.stdout)}
    assert paths[trained.state_path] == "training"
    assert paths[trained.external_path] == "external"


def test_checkpoints_table_names_every_checkpoint(cli, trained):
    result = cli("checkpoints", "list", _run_id(trained.state_path))
    assert result.exit_code == 0
    for name in ("step-3", "hf-3", "s-3"):
        assert name in result.stdout


def test_download_then_inspect(cli, trained, tmp_path):
    result = cli("download", trained.external_path, str(tmp_path / "a"), "--format", "json")
    data = json.loads(result.stdout)
    assert data["tinker_path"] == trained.external_path
    assert data["bytes_transferred"] > 0

    again = json.loads(cli("download", trained.external_path, str(tmp_path / "a"),
                           "--format", "json").stdout)  # fmt: skip
    assert again["bytes_transferred"] == 0

    table = cli("download", trained.external_path, str(tmp_path / "b"))
    assert table.exit_code == 0 and "adapter_model.safetensors" in table.stdout

    info = json.loads(cli("inspect", str(tmp_path / "a"), "--format", "json").stdout)
    assert info["rank"] == 4 and info["errors"] == [] and "tensors" not in info
    shown = cli("inspect", str(tmp_path / "a"), "--tensors")
    assert shown.exit_code == 0 and "lora_A" in shown.stdout


def test_inspect_of_a_broken_adapter_exits_1(cli, tiny_adapter, tmp_path):
    broken = shutil.copytree(tiny_adapter, tmp_path / "broken")
    (broken / "adapter_model.safetensors").write_bytes(b"\x08\x00")
    result = cli("inspect", str(broken))
    assert result.exit_code == 1
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_publish_ttl_unpublish_delete(cli, trained, local_tinker):
    run_id = _run_id(trained.sampler_path)

    def checkpoint():
        rows = json.loads(cli("checkpoints", "list", run_id, "--format", "json").stdout)
        return next(r for r in rows if r["tinker_path"] == trained.sampler_path)

    assert cli("publish", trained.sampler_path).exit_code == 0
    assert checkpoint()["public"] is True
    assert cli("unpublish", trained.sampler_path).exit_code == 0
    assert checkpoint()["public"] is False
    assert cli("ttl", trained.sampler_path, "7200").exit_code == 0
    assert checkpoint()["expires_at"] is not None
    assert cli("ttl", trained.sampler_path, "none").exit_code == 0
    assert checkpoint()["expires_at"] is None


def test_delete_needs_confirmation_then_deletes(cli, trained):
    service = trained.service
    tc = service.create_training_client_from_state(trained.state_path).result()
    doomed = tc.save_weights_for_sampler("doomed").result().path

    refused = cli("delete", doomed)
    assert refused.exit_code == 2 and "--yes" in refused.stderr

    assert json.loads(cli("delete", doomed, "--yes", "--format", "json").stdout)["action"] == (
        "deleted"
    )
    gone = cli("delete", doomed, "--yes")
    assert gone.exit_code == 2 and "was not found" in gone.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["download", "tinker://r:train:0/sampler_weights/s", "x"], "sampler checkpoint"),
        (["download", "tinker://bad", "x"], "expected 'tinker://"),
        (["ttl", "tinker://r:train:0/weights/a", "10"], "outside Tinker's range"),
        (["publish", "tinker://nope:train:0/weights/a"], "was not found"),
    ],
)
def test_errors_are_one_line_without_traceback_or_secret(cli, local_tinker, args, expected):
    result = cli(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.output
    assert local_tinker.api_key not in result.output


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["runs", "list"])
    assert result.exit_code == 2
    assert "no Tinker API key" in result.stderr and "TINKER_API_KEY" in result.stderr


def test_push_hf_pushes_once_and_keeps_the_token_out_of_output(cli, trained, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from hubserver import HubServer

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    token = "hf_cli_secret_token_42"
    monkeypatch.setenv("HF_TOKEN", token)
    cli("download", trained.external_path, str(tmp_path / "a"), "--format", "json")
    with HubServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        first = cli("push-hf", str(tmp_path / "a"), "me/cli-adapter", "--format", "json")
        again = cli("push-hf", str(tmp_path / "a"), "me/cli-adapter", "--format", "json")
        refused = cli("push-hf", str(tmp_path / "a"), "bad repo/x")

    assert json.loads(first.stdout)["pushed"] is True
    assert json.loads(again.stdout)["pushed"] is False
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    for result in (first, again, refused):
        assert token not in result.output
