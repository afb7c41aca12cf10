"""Shared fixtures of the model-management tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_tinker.models import export_hf_tokenizer


@pytest.fixture(scope="session")
def qwen3_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen3's tokenizer exported once as a Hugging Face tokenizer directory."""
    return export_hf_tokenizer("Qwen/Qwen3-8B", tmp_path_factory.mktemp("qwen3-tokenizer"))
