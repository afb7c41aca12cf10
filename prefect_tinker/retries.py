"""Retry policy shared by every task: transient faults only, exponential backoff with jitter."""

from __future__ import annotations

import os
from typing import Any

from prefect.tasks import exponential_backoff

from prefect_tinker.errors import is_transient

RETRIES = 4
"""Retries per task (so at most five attempts)."""

BACKOFF_BASE_SECONDS = float(os.environ.get("PREFECT_TINKER_RETRY_DELAY_SECONDS", "2"))
"""First retry delay; doubles on each retry. Tests shorten it with the environment variable."""
JITTER_FACTOR = 0.5


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the task failed with a transient fault.

    A bad request, an auth failure, an unknown model or a bad dataset fail at once.

    Example:
        ```python
        @task(retries=RETRIES, retry_delay_seconds=backoff(), retry_condition_fn=retry_if_transient)
        def call_tinker(...): ...
        ```
    """
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the state re-raises what the task raised
        return is_transient(exc)
    return False


def backoff(base: float = BACKOFF_BASE_SECONDS, retries: int = RETRIES) -> list[float]:
    """Exponential delays `base * 2**i` for each retry; Prefect adds the jitter."""
    return exponential_backoff(backoff_factor=base)(retries)


RETRY_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": backoff(),
    "retry_jitter_factor": JITTER_FACTOR,
    "retry_condition_fn": retry_if_transient,
}
"""Keyword arguments for `@task(**RETRY_OPTIONS)`."""
