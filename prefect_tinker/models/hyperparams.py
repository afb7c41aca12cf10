"""Hyperparameters: the published LoRA learning-rate formula, LoRA sizes, LR schedules.

`get_lr` is tinker-cookbook's formula: 5e-5 × 10 (LoRA) × (2000 / hidden_size) ** exponent,
with exponents published for Llama (0.781) and Qwen (0.0775) only. `lora_param_count` counts the
adapter the way Tinker builds it: every linear layer of attention and MLP plus the unembedding
gets A (in × r) and B (r × out) — r × (in + out) parameters — except MoE routers, the embedding
and MLA's up-projections (q_b_proj, kv_b_proj); MoE experts share their hidden-size-side factor.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Literal

from prefect_tinker.errors import ConfigurationError
from prefect_tinker.models.registry import Architecture, LoraComponents, get_model

BASE_LR = 5e-5
LORA_LR_RATIO = 10.0  # LoRA LR over full fine-tune LR ("LoRA Without Regret")
LR_EXPONENTS: dict[str, float] = {"llama": 0.781, "qwen": 0.0775}

Schedule = Literal["constant", "linear", "cosine"]


def get_lr(model: str, lora: bool = True) -> float:
    """Recommended learning rate for `model` (LoRA by default, else full fine-tuning).

    Raises ConfigurationError for families without a published exponent.

    Example:
        >>> round(get_lr("meta-llama/Llama-3.1-8B"), 7)
        0.0002857
    """
    spec = get_model(model)
    if spec.lr_family is None:
        raise ConfigurationError(
            f"No published learning-rate formula for {spec.name!r} (family {spec.family!r}); "
            f"the formula's exponents exist only for {sorted(LR_EXPONENTS)}. "
            "Pass an explicit learning_rate (e.g. from a small sweep)."
        )
    lr = BASE_LR * (LORA_LR_RATIO if lora else 1.0)
    return lr * (2000 / spec.architecture.hidden_size) ** LR_EXPONENTS[spec.lr_family]


def lr_at_step(
    base_lr: float, step: int, total_steps: int, schedule: Schedule = "constant"
) -> float:
    """Learning rate at 0-based `step` of `total_steps`: constant, or linear/cosine decay to 0.

    Example:
        >>> lr_at_step(1e-4, 50, 100, "linear")
        5e-05
    """
    if total_steps <= 0:
        raise ConfigurationError(f"total_steps must be positive, got {total_steps}.")
    progress = min(max(step, 0), total_steps) / total_steps
    if schedule == "constant":
        return base_lr
    if schedule == "linear":
        return base_lr * (1.0 - progress)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigurationError(
        f"Unknown lr schedule {schedule!r}; use 'constant', 'linear' or 'cosine'."
    )


def lora_components(arch: Architecture) -> LoraComponents:
    """LoRA parameters per unit of rank for MLP, attention and unembedding."""
    if arch.measured_lora is not None:
        return arch.measured_lora
    h = arch.hidden_size
    layers = _need(arch.num_layers, "num_layers")
    attn = _attention_per_layer(arch) * layers
    if arch.num_experts:
        experts = _need(arch.num_experts, "num_experts")
        expert_width = _need(arch.moe_intermediate_size, "moe_intermediate_size")
        moe_layer = 3 * (expert_width * experts + h)  # outer (hidden) factor shared by experts
        if arch.num_shared_experts:
            moe_layer += 3 * (h + expert_width * arch.num_shared_experts)
        dense_layer = 3 * (h + arch.intermediate_size) if arch.first_dense_layers else 0
        mlp = moe_layer * (layers - arch.first_dense_layers) + dense_layer * arch.first_dense_layers
    else:
        mlp = 3 * (h + _need(arch.intermediate_size, "intermediate_size")) * layers
    return LoraComponents(mlp=mlp, attn=attn, unembed=h + arch.vocab_size)


def _attention_per_layer(arch: Architecture) -> int:
    h = arch.hidden_size
    heads = _need(arch.num_heads, "num_heads")
    if arch.attention == "mla":
        q_a = h + _need(arch.q_lora_rank, "q_lora_rank")
        kv_a = h + _need(arch.kv_lora_rank, "kv_lora_rank") + _need(arch.qk_rope_head_dim, "rope")
        out = heads * _need(arch.v_head_dim, "v_head_dim") + h
        return q_a + kv_a + out
    head_dim = arch.head_dim or h // heads
    q = heads * head_dim
    kv = _need(arch.num_kv_heads, "num_kv_heads") * head_dim
    return (h + q) + 2 * (h + kv) + (q + h)


def _need(value: int | None, name: str) -> int:
    if value is None:
        raise ConfigurationError(
            f"The architecture lacks {name!r}, so its LoRA size cannot be computed; pass a local "
            "model directory (config.json or *.safetensors) instead."
        )
    return value


def lora_param_count(
    model: str | Path | Architecture | LoraComponents,
    rank: int = 32,
    *,
    train_mlp: bool = True,
    train_attn: bool = True,
    train_unembed: bool = True,
) -> int:
    """Trainable LoRA parameters of `model` at `rank`, for the parts Tinker would train.

    `model` is a lineup name, a local model directory (config.json, else safetensors headers),
    an Architecture, or LoraComponents.

    Example:
        >>> lora_param_count("Qwen/Qwen3-8B", 32)
        92286976
    """
    if rank <= 0:
        raise ConfigurationError(f"LoRA rank must be positive, got {rank}.")
    if not (train_mlp or train_attn or train_unembed):
        raise ConfigurationError(
            "At least one of train_mlp, train_attn, train_unembed must be True."
        )
    if isinstance(model, LoraComponents):
        parts = model
    elif isinstance(model, Architecture):
        parts = lora_components(model)
    elif Path(model).expanduser().is_dir():
        parts = lora_components_from_dir(Path(model).expanduser())
    else:
        parts = lora_components(get_model(str(model)).architecture)
    per_rank = parts.mlp * train_mlp + parts.attn * train_attn + parts.unembed * train_unembed
    return per_rank * rank


def architecture_from_config(config: dict) -> Architecture:
    """An Architecture from a Hugging Face `config.json` (text config of VLMs included)."""
    cfg = config.get("text_config") or config
    get = cfg.get
    h = get("hidden_size")
    if h is None or get("vocab_size", config.get("vocab_size")) is None:
        raise ConfigurationError("config.json has no hidden_size/vocab_size; is it a decoder LM?")
    experts = get("num_experts") or get("n_routed_experts") or get("num_local_experts") or 0
    mla = get("kv_lora_rank") is not None
    return Architecture(
        hidden_size=h,
        vocab_size=get("vocab_size", config.get("vocab_size")),
        num_layers=get("num_hidden_layers"),
        num_heads=get("num_attention_heads"),
        num_kv_heads=get("num_key_value_heads", get("num_attention_heads")),
        head_dim=get("head_dim"),
        intermediate_size=get("intermediate_size"),
        num_experts=experts,
        experts_per_token=get("num_experts_per_tok") or get("experts_per_token") or 0,
        moe_intermediate_size=get("moe_intermediate_size")
        or (get("intermediate_size") if experts else None),
        num_shared_experts=get("n_shared_experts") or 0,
        first_dense_layers=get("first_k_dense_replace") or 0,
        attention="mla" if mla else "gqa",
        q_lora_rank=get("q_lora_rank"),
        kv_lora_rank=get("kv_lora_rank"),
        qk_rope_head_dim=get("qk_rope_head_dim"),
        v_head_dim=get("v_head_dim"),
    )


def safetensors_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from the headers of every *.safetensors file (no tensor data read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(directory.glob("*.safetensors")):
        with file.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ConfigurationError(f"'{file}' is too small to be a safetensors file.")
            (length,) = struct.unpack("<Q", raw)
            header = json.loads(f.read(length))
        shapes.update({k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return shapes


_SKIPPED_PARTS = {"gate", "embed_tokens", "q_b_proj", "kv_b_proj", "router"}
_VISION_PARTS = {"visual", "vision_tower", "vision_model", "multi_modal_projector", "mm_projector"}


def lora_components_from_shapes(shapes: dict[str, tuple[int, ...]]) -> LoraComponents:
    """LoRA parameters per rank from tensor shapes, counted like tinker-cookbook's header scan."""
    mlp = attn = unembed = 0
    for name, shape in shapes.items():
        parts = name.split(".")
        if len(shape) != 2 or parts[-1] != "weight" or _SKIPPED_PARTS & set(parts):
            continue
        if _VISION_PARTS & set(parts):
            continue
        if parts[-2] == "lm_head":
            unembed += shape[0] + shape[1]
        elif "experts" in parts:
            index = int(parts[parts.index("experts") + 1])
            weight = parts[parts.index("experts") + 2]
            inner, outer = (shape[1], shape[0]) if weight == "down_proj" else shape
            mlp += inner + (outer if index == 0 else 0)
        elif "mlp" in parts or "feed_forward" in parts:
            mlp += shape[0] + shape[1]
        else:
            attn += shape[0] + shape[1]
    if unembed == 0:  # tied embeddings: Tinker still adapts the unembedding
        embed = next((s for n, s in shapes.items() if n.endswith("embed_tokens.weight")), None)
        unembed = sum(embed) if embed else 0
    return LoraComponents(mlp=mlp, attn=attn, unembed=unembed)


def lora_components_from_dir(directory: Path) -> LoraComponents:
    """LoRA parameters per rank of a local model: from config.json, else safetensors headers."""
    config_path = directory / "config.json"
    if config_path.is_file():
        return lora_components(architecture_from_config(json.loads(config_path.read_text())))
    shapes = safetensors_shapes(directory)
    if not shapes:
        raise ConfigurationError(
            f"'{directory}' has neither config.json nor *.safetensors; point at a Hugging Face "
            "model directory."
        )
    return lora_components_from_shapes(shapes)
