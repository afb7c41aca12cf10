"""Merge a LoRA adapter into its base model and write a full Hugging Face model directory.

Needs the `merge` extra (torch, transformers, peft), imported only when `merge_adapter` runs.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from prefect_tinker.errors import ConfigurationError, MissingExtraError
from prefect_tinker.export.adapters import validate_adapter

# Files of a base model dir that describe the tokenizer and generation, copied to the output.
_COPIED = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "generation_config.json",
)


def merge_adapter(
    adapter_dir: Path | str,
    base_dir: Path | str,
    out_dir: Path | str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write base model + adapter, merged, as a standalone model directory.

    The adapter is validated against the base first; the result is written beside `out_dir`
    and renamed into place once complete.

    Raises:
        MissingExtraError: torch / transformers / peft are not installed.
        AdapterValidationError: the adapter does not fit the base model.
        ConfigurationError: `out_dir` holds files and `overwrite` is False.

    Example:
        >>> merge_adapter("./adapter", "./Qwen3-0.6B", "./merged")
        PosixPath('merged')
    """
    try:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise MissingExtraError("merge_adapter", "merge") from exc

    adapter_dir, base_dir, out_dir = Path(adapter_dir), Path(base_dir), Path(out_dir)
    if not (base_dir / "config.json").is_file():
        raise ConfigurationError(
            f"base {str(base_dir)!r} is not a Hugging Face model directory (no config.json); "
            "pass the local directory of the adapter's base model."
        )
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigurationError(
            f"{str(out_dir)!r} is not empty; choose a new directory or pass overwrite=True."
        )
    validate_adapter(adapter_dir, base=base_dir)

    model = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype="auto")
    with torch.no_grad():
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        merged.save_pretrained(staging, safe_serialization=True)
        for name in _COPIED:
            if (base_dir / name).is_file():
                shutil.copy2(base_dir / name, staging / name)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


__all__ = ["merge_adapter"]
