"""Hyperparameters: the published LR formula, LoRA sizes as Tinker counts them, LR schedules."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from prefect_tinker.errors import ConfigurationError
from prefect_tinker.models import get_lr, get_model, lora_param_count, lr_at_step
from prefect_tinker.models.hyperparams import (
    LORA_LR_RATIO,
    architecture_from_config,
    lora_components,
)

# Tinker's measured LoRA parameters per rank (mlp, attn, unembed), tinker-cookbook hyperparam_utils.
TINKER_MEASURED = {
    "Qwen/Qwen3-235B-A22B-Instruct-2507": (56_598_528, 3_176_448, 156_032),
    "Qwen/Qwen3-30B-A3B": (14_450_688, 835_584, 153_984),
    "Qwen/Qwen3-32B": (5_898_240, 2_490_368, 157_056),
    "Qwen/Qwen3-4B-Instruct-2507": (1_327_104, 737_280, 154_496),
    "Qwen/Qwen3-8B": (1_769_472, 958_464, 156_032),
    "deepseek-ai/DeepSeek-V3.1": (94_307_328, 2_440_000, 136_448),
    "meta-llama/Llama-3.1-70B": (8_847_360, 4_096_000, 136_448),
    "meta-llama/Llama-3.1-8B": (1_769_472, 851_968, 132_352),
    "meta-llama/Llama-3.2-1B": (491_520, 212_992, 130_304),
    "meta-llama/Llama-3.2-3B": (946_176, 573_440, 131_328),
    "moonshotai/Kimi-K2-Thinking": (144_583_680, 1_940_288, 171_008),
    "openai/gpt-oss-120b": (40_124_160, 746_496, 203_968),
    "openai/gpt-oss-20b": (6_842_880, 497_664, 203_968),
}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("meta-llama/Llama-3.1-8B", 2.86e-4),
        ("meta-llama/Llama-3.1-70B", 1.66e-4),
        ("Qwen/Qwen3-8B", 4.73e-4),
    ],
)
def test_lora_lr_reproduces_published_figures(model: str, expected: float) -> None:
    assert get_lr(model) == pytest.approx(expected, rel=2e-3)
    assert get_lr(model, lora=False) == pytest.approx(get_lr(model) / LORA_LR_RATIO)


def test_lr_formula_is_exact() -> None:
    assert get_lr("meta-llama/Llama-3.1-8B") == 5e-5 * 10 * (2000 / 4096) ** 0.781
    assert get_lr("Qwen/Qwen3-8B") == 5e-5 * 10 * (2000 / 4096) ** 0.0775


def test_family_without_published_exponent_raises() -> None:
    with pytest.raises(ConfigurationError, match="deepseek-ai/DeepSeek-V3.1.*learning_rate"):
        get_lr("deepseek-ai/DeepSeek-V3.1")


def test_lora_param_count_reproduces_published_figures() -> None:
    assert lora_param_count("Qwen/Qwen3-8B", 32) == 92_286_976
    assert lora_param_count("meta-llama/Llama-3.1-8B", 32) == 88_121_344


@pytest.mark.parametrize("model", sorted(TINKER_MEASURED))
def test_shapes_give_tinkers_measured_counts_dense_moe_and_mla(model: str) -> None:
    parts = lora_components(get_model(model).architecture)
    assert (parts.mlp, parts.attn, parts.unembed) == TINKER_MEASURED[model]


def test_train_flags_select_parts() -> None:
    mlp, attn, unembed = TINKER_MEASURED["Qwen/Qwen3-8B"]
    assert lora_param_count("Qwen/Qwen3-8B", 8, train_attn=False, train_unembed=False) == 8 * mlp
    assert lora_param_count("Qwen/Qwen3-8B", 1, train_mlp=False) == attn + unembed
    with pytest.raises(ConfigurationError, match="At least one"):
        lora_param_count("Qwen/Qwen3-8B", 1, train_mlp=False, train_attn=False, train_unembed=False)
    with pytest.raises(ConfigurationError, match="rank"):
        lora_param_count("Qwen/Qwen3-8B", 0)


QWEN3_8B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "vocab_size": 151936,
}


def test_count_from_local_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN3_8B_CONFIG))
    assert lora_param_count(tmp_path, 32) == 92_286_976
    vl = {"text_config": QWEN3_8B_CONFIG, "vision_config": {"hidden_size": 1152}}
    assert architecture_from_config(vl).hidden_size == 4096


def _write_safetensors_header(path: Path, shapes: dict[str, list[int]]) -> None:
    header = {n: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for n, s in shapes.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_count_from_safetensors_headers_dense_and_moe(tmp_path: Path) -> None:
    h, inter, vocab = 64, 128, 1000
    shapes: dict[str, list[int]] = {
        "model.embed_tokens.weight": [vocab, h],
        "lm_head.weight": [vocab, h],
        "model.norm.weight": [h],
    }
    for i in range(2):
        p = f"model.layers.{i}"
        shapes |= {
            f"{p}.self_attn.q_proj.weight": [h, h],
            f"{p}.self_attn.k_proj.weight": [16, h],
            f"{p}.self_attn.v_proj.weight": [16, h],
            f"{p}.self_attn.o_proj.weight": [h, h],
            f"{p}.input_layernorm.weight": [h],
            f"{p}.mlp.gate.weight": [4, h],  # router: not adapted
        }
        for e in range(4):
            shapes |= {
                f"{p}.mlp.experts.{e}.gate_proj.weight": [inter, h],
                f"{p}.mlp.experts.{e}.up_proj.weight": [inter, h],
                f"{p}.mlp.experts.{e}.down_proj.weight": [h, inter],
            }
    _write_safetensors_header(tmp_path / "model-00001-of-00001.safetensors", shapes)
    per_layer_attn = 2 * (h + h) + 2 * (h + 16)
    per_layer_mlp = 3 * (inter * 4 + h)
    expected = 2 * per_layer_attn + 2 * per_layer_mlp + (h + vocab)
    assert lora_param_count(tmp_path, 1) == expected


def test_schedules() -> None:
    assert lr_at_step(1e-4, 30, 100, "constant") == 1e-4
    assert lr_at_step(1e-4, 0, 100, "linear") == 1e-4
    assert lr_at_step(1e-4, 50, 100, "linear") == pytest.approx(5e-5)
    assert lr_at_step(1e-4, 100, 100, "linear") == 0.0
    assert lr_at_step(1e-4, 0, 100, "cosine") == pytest.approx(1e-4)
    assert lr_at_step(1e-4, 50, 100, "cosine") == pytest.approx(5e-5)
    assert lr_at_step(1e-4, 100, 100, "cosine") == pytest.approx(0.0)
    with pytest.raises(ConfigurationError, match="'step'"):
        lr_at_step(1e-4, 1, 10, "step")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="total_steps"):
        lr_at_step(1e-4, 1, 0)
