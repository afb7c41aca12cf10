"""Tinker-side checkpoint management: publish, unpublish, set a TTL, delete.

Thin wrappers over the SDK's `RestClient` that check the path and TTL first and turn the SDK's
HTTP errors into typed errors that say what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect_tinker.errors import (
    TRANSIENT_STATUS_CODES,
    CheckpointNotFound,
    ConfigurationError,
    MissingCredentialsError,
    TinkerServiceError,
)
from prefect_tinker.paths import MAX_TTL_SECONDS, MIN_TTL_SECONDS, TinkerPath


def publish(rest: Any, tinker_path: str) -> str:
    """Make a checkpoint public; publishing a public one is a no-op. Returns the path.

    Example:
        >>> publish(rest, "tinker://run:train:0/sampler_weights/final")
        'tinker://run:train:0/sampler_weights/final'
    """
    path = str(TinkerPath.parse(tinker_path))
    with sdk_errors(path):
        rest.publish_checkpoint_from_tinker_path(path).result()
    return path


def unpublish(rest: Any, tinker_path: str) -> str:
    """Make a published checkpoint private again. Returns the path."""
    path = str(TinkerPath.parse(tinker_path))
    with sdk_errors(path):
        rest.unpublish_checkpoint_from_tinker_path(path).result()
    return path


def set_ttl(rest: Any, tinker_path: str, ttl_seconds: int | None) -> str:
    """Expire the checkpoint `ttl_seconds` from now (1 hour to 10 years); None: never.

    Raises:
        ConfigurationError: a TTL outside 3600 s .. 10 years.
    """
    path = str(TinkerPath.parse(tinker_path))
    if ttl_seconds is not None and not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ConfigurationError(
            f"TTL {ttl_seconds} s is outside Tinker's range of {MIN_TTL_SECONDS} s (1 hour) to "
            f"{MAX_TTL_SECONDS} s (10 years); pass a value in range, or no TTL to keep it forever."
        )
    with sdk_errors(path):
        rest.set_checkpoint_ttl_from_tinker_path(path, ttl_seconds).result()
    return path


def delete(rest: Any, tinker_path: str) -> str:
    """Delete a checkpoint for good. Returns the path."""
    path = str(TinkerPath.parse(tinker_path))
    with sdk_errors(path):
        rest.delete_checkpoint_from_tinker_path(path).result()
    return path


@contextmanager
def sdk_errors(what: str) -> Iterator[None]:
    """Re-raise the SDK's HTTP errors about `what` as typed prefect-tinker errors.

    Permanent ones become errors that say what to do; transient ones (connection, 408/409/
    429/5xx) become `TinkerServiceError`, which `is_transient` still retries. None keeps the
    SDK exception as its cause: that one holds the request, API key header included.
    """
    import tinker

    try:
        yield
    except tinker.NotFoundError:
        raise CheckpointNotFound(
            f"{what} was not found: it does not exist, expired, or belongs to another user. "
            "List what exists with `prefect-tinker runs list` / `checkpoints list RUN`."
        ) from None
    except (tinker.AuthenticationError, tinker.PermissionDeniedError) as exc:
        raise MissingCredentialsError(
            f"the Tinker service refused the API key for {what} (HTTP {exc.status_code}); "
            "check TINKER_API_KEY or the TinkerCredentials block."
        ) from None
    except (tinker.BadRequestError, tinker.UnprocessableEntityError) as exc:
        raise ConfigurationError(f"the Tinker service refused {what}: {_detail(exc)}") from None
    except tinker.APIStatusError as exc:
        message = f"the Tinker service answered HTTP {exc.status_code} for {what}: {_detail(exc)}"
        if exc.status_code in TRANSIENT_STATUS_CODES:
            raise TinkerServiceError(message) from None
        raise ConfigurationError(message) from None
    except tinker.APIConnectionError as exc:
        raise TinkerServiceError(
            f"could not reach the Tinker service for {what} ({type(exc).__name__}); "
            "check the base URL and the network, then retry."
        ) from None


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(exc).splitlines()[0]


__all__ = ["delete", "publish", "sdk_errors", "set_ttl", "unpublish"]
