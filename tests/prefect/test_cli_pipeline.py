"""`prefect-tinker quickstart` / `blocks`: the README's first command, and block documents."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from prefect_tinker import TinkerCredentials, TinkerLoraConfig
from prefect_tinker.cli import app

runner = CliRunner()


def test_quickstart_trains_on_the_local_service_and_prints_the_adapter_dir():
    result = runner.invoke(app, ["quickstart", "--steps", "2"])
    assert result.exit_code == 0, result.output
    adapter = Path(result.output.strip().splitlines()[-1].removeprefix("adapter: "))
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "adapter_config.json").is_file()


def test_blocks_register_and_create_local():
    result = runner.invoke(app, ["blocks", "register"])
    assert result.exit_code == 0, result.output
    assert "registered tinker-credentials" in result.output
    result = runner.invoke(app, ["blocks", "create-local", "cli-local"])
    assert result.exit_code == 0, result.output
    assert TinkerCredentials.load("cli-local").is_local
    assert TinkerLoraConfig.load("cli-local").rank == 8


def test_create_from_env_keeps_the_key_secret(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-from-the-environment")
    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:9")
    result = runner.invoke(app, ["blocks", "create-from-env", "cli-env"])
    assert result.exit_code == 0 and "tml-from-the-environment" not in result.output
    loaded = TinkerCredentials.load("cli-env")
    assert loaded.api_key.get_secret_value() == "tml-from-the-environment"
    assert loaded.base_url == "http://127.0.0.1:9"


def test_blocks_script_registers_types_and_saves_local_blocks():
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    script = Path(__file__).resolve().parents[2] / "blocks" / "register.py"
    done = subprocess.run(
        [sys.executable, str(script), "--local", "script-local"],
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "registered tinker-lora-config" in done.stdout
    assert TinkerCredentials.load("script-local").is_local
