"""Model management: registry, hyperparameters, tokenizers, renderers.

Example:
    >>> from prefect_tinker.models import get_model, get_lr
    >>> get_lr(get_model("Qwen/Qwen3-8B").name)
"""

from __future__ import annotations

from prefect_tinker.models.hf_export import export_hf_tokenizer
from prefect_tinker.models.hyperparams import get_lr, lora_param_count, lr_at_step
from prefect_tinker.models.registry import (
    Architecture,
    LiveModel,
    LoraComponents,
    ModelSpec,
    get_model,
    list_models,
    live_models,
)
from prefect_tinker.models.renderers import RenderedSequence, Renderer, get_renderer
from prefect_tinker.models.tokenizers import Tokenizer, get_tokenizer

__all__ = [
    "Architecture",
    "LiveModel",
    "LoraComponents",
    "ModelSpec",
    "RenderedSequence",
    "Renderer",
    "Tokenizer",
    "export_hf_tokenizer",
    "get_lr",
    "get_model",
    "get_renderer",
    "get_tokenizer",
    "list_models",
    "live_models",
    "lora_param_count",
    "lr_at_step",
]
