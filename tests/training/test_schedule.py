"""The step -> batch mapping (learning-rate schedules are `prefect_tinker.models.lr_at_step`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_tinker.errors import DatasetError
from prefect_tinker.training import BatchPlan, TrainConfig


class Batches:
    """A dataset of `n` datums (ints stand in for Datums), shuffled per epoch and seed."""

    fingerprint = "fp"

    def __init__(self, n: int) -> None:
        self.n = n

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list[int]]:
        items = list(range(self.n))
        return [items[i : i + batch_size] for i in range(0, self.n, batch_size)]


def cfg(**kw) -> TrainConfig:
    return TrainConfig(base_model="m", learning_rate=1e-3, **kw)


def test_plan_counts_every_epoch_and_caps_at_max_steps():
    assert BatchPlan.build(Batches(10), cfg(batch_size=4, num_epochs=2)).total_steps == 6
    assert (
        BatchPlan.build(Batches(10), cfg(batch_size=4, num_epochs=2, max_steps=4)).total_steps == 4
    )


def test_empty_dataset_fails_before_training():
    with pytest.raises(DatasetError, match="no training batches"):
        BatchPlan.build(Batches(0), cfg())


@given(st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_locate_walks_epochs_in_order(counts):
    plan = BatchPlan(tuple(counts), sum(counts))
    expected = [(e, i) for e, c in enumerate(counts) for i in range(c)]
    assert [plan.locate(s) for s in range(plan.total_steps)] == expected
    assert plan.locate(plan.total_steps) == (len(counts), 0)


def test_locate_refuses_steps_outside_the_run():
    with pytest.raises(ValueError, match="outside"):
        BatchPlan((2,), 2).locate(3)
