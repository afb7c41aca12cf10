"""Model management: registry, hyperparameters, tokenizers, renderers."""

from __future__ import annotations

from prefect_tinker.models.hf_export import export_hf_tokenizer
from prefect_tinker.models.tokenizers import Tokenizer, get_tokenizer

__all__ = ["Tokenizer", "export_hf_tokenizer", "get_tokenizer"]
