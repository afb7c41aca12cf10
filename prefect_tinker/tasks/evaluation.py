"""Task: mean NLL of a checkpoint on held-out data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prefect import task

from prefect_tinker.blocks import TinkerCredentials
from prefect_tinker.retries import RETRY_OPTIONS, typed_sdk_errors
from prefect_tinker.tasks.training import checkpoint_cache_key

if TYPE_CHECKING:
    import tinker


def _eval_cache_key(context, parameters) -> str | None:  # type: ignore[no-untyped-def]
    # Cache only when the caller names the data (a fingerprint): hashing datums is costly.
    if not parameters.get("data_fingerprint"):
        return None
    return checkpoint_cache_key(context, {k: v for k, v in parameters.items() if k != "datums"})


@task(
    name="Evaluate Tinker checkpoint",
    cache_key_fn=_eval_cache_key,
    persist_result=True,
    **RETRY_OPTIONS,
)
@typed_sdk_errors("checkpoint", "source")
def evaluate(
    credentials: TinkerCredentials,
    source: str,
    datums: Sequence[tinker.Datum],
    data_fingerprint: str | None = None,
    batch_size: int = 64,
) -> float:
    """Mean negative log-likelihood per trained token of `datums` under `source`'s weights.

    `source` is a training checkpoint path (or a run id opened in this process). With a
    `data_fingerprint` (e.g. `f"{dataset.fingerprint}:holdout"`) the result is cached on
    (checkpoint, data), so re-running a finished pipeline sends no forward passes.

    Example:
        ```python
        nll = evaluate(creds, summary.final_checkpoint, dataset.holdout)
        ```
    """
    from prefect_tinker.evaluation import evaluate as evaluate_nll

    client = credentials.get_training_client(source)
    return evaluate_nll(client, datums, batch_size=batch_size)
