"""Held-out evaluation: mean negative log-likelihood per weighted token, via `forward`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prefect_tinker.errors import DatasetError
from prefect_tinker.training.loop import LOSS_FN, weighted_tokens

if TYPE_CHECKING:
    import tinker


def evaluate(
    training_client: tinker.TrainingClient,
    datums: Sequence[tinker.Datum],
    *,
    batch_size: int = 64,
) -> float:
    """Mean NLL per weighted token of `datums` under the client's current weights.

    Sends forward-only requests (no gradients, no optimizer step), all submitted before the
    first result is awaited. Raises `DatasetError` when there is nothing to score.

    Example:
        >>> nll = evaluate(training_client, dataset.holdout)  # doctest: +SKIP
        >>> round(nll, 3)  # doctest: +SKIP
        2.417
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    total_weight = sum(weighted_tokens(d) for d in datums)
    if not datums or total_weight <= 0:
        raise DatasetError(
            f"nothing to evaluate: {len(datums)} datums with {total_weight} weighted tokens; "
            "use a non-empty holdout split whose examples have trained (weight > 0) tokens."
        )
    futures = [
        training_client.forward(list(datums[i : i + batch_size]), LOSS_FN)
        for i in range(0, len(datums), batch_size)
    ]
    loss_sum = sum(f.result().metrics["loss:sum"] for f in futures)
    return loss_sum / total_weight
