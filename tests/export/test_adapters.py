"""Adapter inspection reads only headers; validation names every problem it finds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from prefect_tinker.errors import AdapterValidationError
from prefect_tinker.export.adapters import inspect_adapter, validate_adapter

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture
def adapter(tiny_adapter, tmp_path) -> Path:
    """A private copy of the session adapter that a test may damage."""
    return Path(shutil.copytree(tiny_adapter, tmp_path / "adapter"))


def _edit_config(directory: Path, **changes) -> None:
    path = directory / "adapter_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_inspect_reports_rank_targets_tensors_and_base(tiny_adapter, tiny_base):
    info = inspect_adapter(tiny_adapter)

    assert (info.rank, info.alpha) == (4, 8.0)
    assert info.target_modules == ["down_proj", "q_proj", "v_proj"]
    assert info.base_model == str(tiny_base)
    assert len(info.tensors) == 2 * 3 * 2  # A and B, three modules, two layers
    q = next(m for m in info.modules if m.name.endswith("layers.0.self_attn.q_proj"))
    assert (q.a_shape, q.b_shape) == ((4, 32), (32, 4))
    tensors = load_file(str(tiny_adapter / WEIGHTS))
    assert info.parameter_count == sum(t.size for t in tensors.values())
    assert {t.name: t.shape for t in info.tensors} == {k: v.shape for k, v in tensors.items()}
    assert info.dtypes == ["F32"]


def test_inspect_does_not_import_torch(tiny_adapter):
    code = (
        "import sys; from prefect_tinker.export.adapters import validate_adapter; "
        f"validate_adapter({str(tiny_adapter)!r}); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_healthy_adapter_validates_against_its_base(tiny_adapter, tiny_base):
    report = validate_adapter(tiny_adapter, base=tiny_base)
    assert report.ok, report.errors
    assert report.warnings == []


def test_adapter_for_another_architecture_is_refused(tiny_adapter, tmp_path):
    other = json.loads((Path(inspect_adapter(tiny_adapter).base_model) / "config.json").read_text())
    other["hidden_size"] = 48
    with pytest.raises(AdapterValidationError, match="belongs to another base model"):
        validate_adapter(tiny_adapter, base=other)


def test_layer_beyond_the_base_depth_is_an_error(tiny_adapter, tiny_base):
    arch = json.loads((tiny_base / "config.json").read_text()) | {"num_hidden_layers": 1}
    report = validate_adapter(tiny_adapter, base=arch, raise_on_error=False)
    assert any("layer 1 does not exist" in e for e in report.errors)


def test_config_rank_that_disagrees_with_the_tensors_is_an_error(adapter):
    _edit_config(adapter, r=8)
    with pytest.raises(AdapterValidationError, match="r=8"):
        validate_adapter(adapter)


def test_missing_lora_b_and_untargeted_module_are_listed(adapter):
    tensors = load_file(str(adapter / WEIGHTS))
    key_b = next(k for k in tensors if "layers.0.self_attn.q_proj.lora_B" in k)
    del tensors[key_b]
    tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] = np.zeros(
        (4, 32), np.float32
    )
    tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"] = np.zeros(
        (16, 4), np.float32
    )
    save_file(tensors, str(adapter / WEIGHTS))

    report = validate_adapter(adapter, raise_on_error=False)

    errors = "\n".join(report.errors)
    assert "q_proj has no lora_B" in errors
    assert "k_proj carries LoRA weights but is not in target_modules" in errors


def test_missing_files_and_truncated_weights_are_errors(adapter):
    data = (adapter / WEIGHTS).read_bytes()
    (adapter / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterValidationError, match="truncated"):
        validate_adapter(adapter)
    (adapter / "adapter_config.json").unlink()
    with pytest.raises(AdapterValidationError, match="missing adapter_config.json"):
        inspect_adapter(adapter)


def test_serving_stack_warnings(adapter):
    _edit_config(
        adapter, target_modules=["q_proj", "v_proj", "down_proj", "lm_head"], use_dora=True
    )
    _edit_config(adapter, rank_pattern={"q_proj": 4}, modules_to_save=["embed_tokens"])
    report = validate_adapter(adapter)
    text = "\n".join(report.warnings)
    assert "vLLM does not serve LoRA on lm_head" in text
    assert "modules_to_save" in text
    assert "DoRA" in text


def test_high_rank_warns_with_the_vllm_flag(adapter):
    tensors = load_file(str(adapter / WEIGHTS))
    big = {
        k: np.zeros((32, v.shape[1]) if "lora_A" in k else (v.shape[0], 32), np.float32)
        for k, v in tensors.items()
    }
    save_file(big, str(adapter / WEIGHTS))
    _edit_config(adapter, r=32)
    report = validate_adapter(adapter)
    assert any("--max-lora-rank 32" in w for w in report.warnings)


def test_a_registry_model_name_gives_the_real_architecture(tiny_adapter):
    report = validate_adapter(tiny_adapter, base="Qwen/Qwen3-0.6B", raise_on_error=False)
    assert any("maps 32 -> 32 features" in e and "1024" in e for e in report.errors)


def test_unknown_base_name_only_warns(tiny_adapter):
    report = validate_adapter(tiny_adapter, base="nobody/no-such-model")
    assert report.ok and any("neither a local model directory" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("config", "header"),
    [
        ({}, {"__metadata__": True}),
        ({"target_parameters": 5}, {}),
        ({"modules_to_save": [1, "a"], "rank_pattern": [1]}, {}),
        ({"target_modules": "([", "base_model_name_or_path": "x" * 300}, {}),
    ],
    ids=["metadata-not-object", "params-not-list", "mixed-types", "bad-regex-long-name"],
)
def test_malformed_configs_give_a_report_not_a_crash(tmp_path, config, header):
    import struct

    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    raw = json.dumps(header).encode()
    (tmp_path / WEIGHTS).write_bytes(struct.pack("<Q", len(raw)) + raw)
    report = validate_adapter(tmp_path, raise_on_error=False)
    assert report.errors
    with pytest.raises(AdapterValidationError):
        validate_adapter(tmp_path)
