"""Failure policy shared by every task: retry transient faults only (exponential backoff with
jitter), and never let an SDK exception — which holds the request and its API key header —
reach Prefect, which would log it and pickle it into the failed state."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

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


F = TypeVar("F", bound=Callable[..., Any])


def typed_sdk_errors(label: str, parameter: str | None = None) -> Callable[[F], F]:
    """Decorator: re-raise the SDK's HTTP errors as typed prefect-tinker errors, naming
    `label` (and the value of `parameter`, e.g. a tinker path), without the SDK exception.

    Transient ones become `TinkerServiceError` (still retried); see
    `prefect_tinker.export.publish.sdk_errors` for the mapping.

    Example:
        ```python
        @task(name="Delete Tinker checkpoint", **RETRY_OPTIONS)
        @typed_sdk_errors("checkpoint", "tinker_path")
        def delete_checkpoint(credentials, tinker_path): ...
        ```
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from prefect_tinker.export.publish import sdk_errors

            what = label
            if parameter is not None:
                value = signature.bind_partial(*args, **kwargs).arguments.get(parameter)
                if value is not None:
                    what = f"{label} {value!r}"
            with sdk_errors(what):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
