"""evaluate refuses input it cannot score before sending anything (scoring itself is covered
against the service in test_train_service.py)."""

from __future__ import annotations

import pytest
import tinker

from prefect_tinker.errors import DatasetError
from prefect_tinker.evaluation import evaluate


class NoRequests:
    def forward(self, *args, **kwargs):
        raise AssertionError("evaluate sent a request for unusable input")


def datum(weights: list[float]) -> tinker.Datum:
    n = len(weights)
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(list(range(1, n + 1))),
        loss_fn_inputs={"target_tokens": list(range(2, n + 2)), "weights": weights},
    )


def test_empty_or_unweighted_holdout_is_refused():
    with pytest.raises(DatasetError, match="0 datums"):
        evaluate(NoRequests(), [])
    with pytest.raises(DatasetError, match="weight > 0"):
        evaluate(NoRequests(), [datum([0.0, 0.0])])


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate(NoRequests(), [datum([1.0])], batch_size=0)
