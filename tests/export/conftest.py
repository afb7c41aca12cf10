"""Shared export fixtures: a tiny Hugging Face base model and a PEFT adapter trained on nothing.

Both are made here with `save_pretrained`, once per session, so adapter, merge and hub tests
work on real files without a model hub.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tinker
from tinker import types

sys.path.insert(0, str(Path(__file__).parent))  # the helper modules beside this file

VOCAB = 96


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer Qwen3 model directory (config.json + model.safetensors)."""
    from prefect_tinker.local.basemodels import write_tiny_qwen3

    return write_tiny_qwen3(
        tmp_path_factory.mktemp("tiny-base"),
        vocab_size=VOCAB,
        max_position_embeddings=128,
        hidden_size=32,
        intermediate_size=64,
        head_dim=8,
    )


@pytest.fixture(scope="session")
def tiny_adapter(tiny_base, tmp_path_factory) -> Path:
    """A rank-4 LoRA adapter on q/v/down_proj of `tiny_base`, with non-zero lora_B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    dest = tmp_path_factory.mktemp("tiny-adapter")
    peft_model.save_pretrained(dest)
    return dest


BASE = "Qwen/Qwen3-0.6B"  # a stand-in model of the local service
TEXTS = ["The capital of France is Paris.", "Two plus three is five.", "Bees make honey."]


@dataclass
class Trained:
    service: tinker.ServiceClient
    rest: tinker.RestClient
    datum: types.Datum
    state_path: str
    external_path: str
    sampler_path: str


def _datums(tokenizer) -> list[types.Datum]:
    out = []
    for text in TEXTS:
        tokens = tokenizer.encode(text, add_special_tokens=False)
        out.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": np.array(tokens[1:], dtype=np.int64),
                    "weights": np.ones(len(tokens) - 1, dtype=np.float32),
                },
            )
        )
    return out


@pytest.fixture(scope="session")
def trained(local_tinker) -> Trained:
    """A 3-step rank-4 run on the local service with a training, external and sampler save."""
    service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    rest = tinker.RestClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    tc = service.create_lora_training_client(base_model=BASE, rank=4, seed=3).result()
    datums = _datums(tc.get_tokenizer())
    for _ in range(3):
        tc.forward_backward(datums, "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=5e-2)).result()
    state = tc.save_state("step-3").result().path
    external = tc.save_weights_external("hf-3").result().path
    sampler = tc.save_weights_for_sampler("s-3").result().path
    yield Trained(service, rest, datums[0], state, external, sampler)
    service.close("success").result(timeout=30)
