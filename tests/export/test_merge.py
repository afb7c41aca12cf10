"""Merging: the merged model computes what base + adapter computes."""

from __future__ import annotations

import builtins

import pytest

from prefect_tinker.errors import ConfigurationError, MissingExtraError
from prefect_tinker.export.merge import merge_adapter


def test_merged_logits_equal_the_peft_models(tiny_adapter, tiny_base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = merge_adapter(tiny_adapter, tiny_base, tmp_path / "merged")

    tokens = torch.tensor([[1, 5, 9, 33, 70, 2, 11]])
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_base), tiny_adapter
        ).eval()
        expected = peft_model(tokens).logits
        merged = AutoModelForCausalLM.from_pretrained(out).eval()
        got = merged(tokens).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()(tokens).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3)  # the adapter really changed something
    assert not any(p.name.startswith(".merged.partial") for p in tmp_path.iterdir())


def test_non_empty_output_is_refused(tiny_adapter, tiny_base, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ConfigurationError, match="not empty"):
        merge_adapter(tiny_adapter, tiny_base, tmp_path / "out")


def test_missing_extra_names_the_install_line(tiny_adapter, tiny_base, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(MissingExtraError, match=r"pip install 'prefect-tinker\[merge\]'"):
        merge_adapter(tiny_adapter, tiny_base, tmp_path / "merged")
