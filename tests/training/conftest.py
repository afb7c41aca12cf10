"""Shared pieces of the training tests: a tiny chat dataset (through `prefect_tinker.data`)
and a run config."""

from __future__ import annotations

import json

import pytest

from prefect_tinker.data import ChatDataset, load_dataset
from prefect_tinker.models import get_renderer
from prefect_tinker.training import TrainConfig

BASE_MODEL = "Qwen/Qwen3-0.6B"  # the engine's tiny seeded stand-in, with the real tokenizer

CONVERSATIONS = [
    ("What is 2 + 2?", "4."),
    ("Name a colour.", "Blue."),
    ("Say hi.", "Hi!"),
    ("Capital of France?", "Paris."),
]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> ChatDataset:
    """4 one-turn conversations: batch 2 gives 2 steps per epoch."""
    path = tmp_path_factory.mktemp("training-data") / "chat.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in CONVERSATIONS
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return load_dataset(path, renderer=get_renderer(None, BASE_MODEL), max_length=64)


def tiny_config(**overrides) -> TrainConfig:
    """6 steps: 4 datums, batch 2, 3 epochs; a resumable checkpoint every 2 steps."""
    settings = {
        "base_model": BASE_MODEL,
        "learning_rate": 2e-2,
        "lr_schedule": "linear",
        "batch_size": 2,
        "num_epochs": 3,
        "checkpoint_every": 2,
        "checkpoint_ttl_seconds": 3600,
        "lora": {"rank": 4, "seed": 0},
        **overrides,
    }
    return TrainConfig(**settings)
