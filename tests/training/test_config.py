"""TrainConfig validates every field with an actionable message and hashes only what matters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prefect_tinker.training import LoraSettings, TrainConfig


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"base_model": "Qwen/Qwen3-0.6B", "learning_rate": 1e-4, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"num_epochs": 0}, "num_epochs"),
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"pipeline_depth": 0}, "pipeline_depth"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"checkpoint_ttl_seconds": 60}, "1 hour to 10 years"),
        ({"run_key": "a/b"}, "run_key 'a/b' is not allowed"),
        ({"base_model": ""}, "base_model"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(overrides, message):
    with pytest.raises(ValidationError, match=message):
        config(**overrides)


def test_lora_that_trains_nothing_is_rejected():
    with pytest.raises(ValidationError, match="set at least one of them to True"):
        LoraSettings(train_mlp=False, train_attn=False, train_unembed=False)


def test_rank_must_be_positive():
    with pytest.raises(ValidationError, match="rank"):
        LoraSettings(rank=0)


def test_hash_ignores_operational_settings_but_not_training_math():
    base = config()
    operational = config(
        run_key="x", checkpoint_every=3, checkpoint_ttl_seconds=None, pipeline_depth=5
    )
    assert operational.config_hash() == base.config_hash()
    for changed in (
        config(learning_rate=2e-4),
        config(batch_size=4),
        config(seed=1),
        config(max_steps=3),
        config(lora=LoraSettings(rank=8)),
        config(lr_schedule="cosine"),
    ):
        assert changed.config_hash() != base.config_hash()


def test_run_key_is_given_or_derived_from_config_and_data():
    assert config(run_key="mine").resolved_run_key("fp") == "mine"
    derived = config().resolved_run_key("fp")
    assert derived.startswith("sft-") and len(derived) == 20
    assert derived == config().resolved_run_key("fp")
    assert derived != config().resolved_run_key("other-data")
    assert derived != config(seed=3).resolved_run_key("fp")
