"""Shared pieces of the training tests: a tiny deterministic dataset and a run config."""

from __future__ import annotations

import hashlib
import random

import pytest
import tinker

from prefect_tinker.training import TrainConfig

BASE_MODEL = "Qwen/Qwen3-0.6B"  # the engine's tiny seeded stand-in


class TinyDataset:
    """`n` short next-token datums (first two tokens unweighted, like a prompt)."""

    def __init__(self, n: int = 4, seq_len: int = 12, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.train = []
        for _ in range(n):
            tokens = [rng.randrange(10, 500) for _ in range(seq_len + 1)]
            weights = [0.0, 0.0] + [1.0] * (seq_len - 2)
            self.train.append(
                tinker.Datum(
                    model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
                )
            )
        self.fingerprint = hashlib.sha256(f"tiny:{n}:{seq_len}:{seed}".encode()).hexdigest()[:16]

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list[tinker.Datum]]:
        order = list(range(len(self.train)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        return [
            [self.train[i] for i in order[j : j + batch_size]]
            for j in range(0, len(order), batch_size)
        ]


@pytest.fixture(scope="session")
def tiny_dataset() -> TinyDataset:
    return TinyDataset()


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
