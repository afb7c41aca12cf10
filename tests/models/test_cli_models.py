"""CLI: `models list|show`, `lr`, `data preview`, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from prefect_tinker.cli import app

runner = CliRunner()


def test_models_list_table_and_json() -> None:
    table = runner.invoke(app, ["models", "list"])
    assert table.exit_code == 0, table.output
    assert "Qwen/Qwen3-8B" in table.output and "role_colon" in table.output
    listed = json.loads(runner.invoke(app, ["models", "list", "--format", "json"]).output)
    names = [row["name"] for row in listed]
    assert "meta-llama/Llama-3.1-8B" in names and "openai/gpt-oss-120b" in names


def test_models_show() -> None:
    shown = json.loads(runner.invoke(app, ["models", "show", "Qwen/Qwen3-8B", "-f", "json"]).output)
    assert shown["lora_params_rank32"] == 92_286_976
    assert shown["architecture"]["hidden_size"] == 4096
    assert abs(shown["recommended_lr"] - 4.73e-4) < 1e-6
    table = runner.invoke(app, ["models", "show", "Qwen/Qwen3-8B"])
    assert "92,286,976" in table.output


def test_unknown_model_exits_2_with_suggestions() -> None:
    result = runner.invoke(app, ["models", "show", "Qwen/Qwen3-8b-chat"])
    assert result.exit_code == 2
    assert "Did you mean 'Qwen/Qwen3-8B'" in result.output


def test_lr() -> None:
    assert runner.invoke(app, ["lr", "meta-llama/Llama-3.1-8B"]).output.strip() == "0.000285642"
    full = json.loads(
        runner.invoke(app, ["lr", "meta-llama/Llama-3.1-70B", "--full", "-f", "json"]).output
    )
    assert full["lora"] is False and abs(full["learning_rate"] - 1.66e-5) < 1e-7
    refused = runner.invoke(app, ["lr", "openai/gpt-oss-20b"])
    assert refused.exit_code == 2 and "learning_rate" in refused.output


def test_data_preview_marks_trained_tokens(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Yo"},
                ]
            }
        )
        + "\n"
        + json.dumps({"prompt": "2+2?", "completion": "4"})
        + "\n"
    )
    result = runner.invoke(
        app, ["data", "preview", str(path), "--model", "Qwen/Qwen3-8B", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    examples = json.loads(result.output)["examples"]
    assert [e["line"] for e in examples] == [1, 2]
    assert sum(examples[1]["weights"]) > 0 and examples[1]["weights"][0] == 0
    table = runner.invoke(
        app, ["data", "preview", str(path), "--model", "Qwen/Qwen3-8B", "--limit", "1"]
    )
    assert "line 1" in table.output and "trained" in table.output and "line 2" not in table.output


def test_data_preview_reports_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n")
    result = runner.invoke(app, ["data", "preview", str(path), "--model", "Qwen/Qwen3-8B"])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output
