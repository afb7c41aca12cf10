"""Typed errors for prefect-tinker, and the one classification of transient faults.

Every error a user can cause names the bad value and how to fix it. Everything that is
worth retrying is decided by :func:`is_transient`, which tasks use as their retry condition.
"""

from __future__ import annotations

import asyncio
import socket

TRANSIENT_STATUS_CODES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


class PrefectTinkerError(Exception):
    """Base class of every error raised by prefect-tinker."""


class ConfigurationError(PrefectTinkerError, ValueError):
    """A setting, block field or parameter has a value that cannot work."""


class MissingCredentialsError(ConfigurationError):
    """No Tinker API key (or HF token) could be found."""


class InvalidTinkerPath(PrefectTinkerError, ValueError):
    """A string that should be a `tinker://<run>/<segment>/<name>` path is not one."""


class UnknownModelError(PrefectTinkerError, LookupError):
    """A base-model name that the registry or the service does not know."""


class TokenizerNotFoundError(PrefectTinkerError, LookupError):
    """A model whose tokenizer is neither shipped nor available offline."""


class DatasetError(PrefectTinkerError, ValueError):
    """A dataset file or record that cannot be turned into training data."""


class CheckpointNotFound(PrefectTinkerError, LookupError):
    """A checkpoint that does not exist, expired, or belongs to someone else."""


class ResumeMismatchError(PrefectTinkerError, ValueError):
    """Checkpoints of a run_key were written with another config or dataset than this run's."""


class DownloadError(PrefectTinkerError):
    """A checkpoint download that could not complete."""


class IntegrityError(DownloadError):
    """Downloaded bytes whose size or sha256 differ from what was expected."""


class UnsafePathError(PrefectTinkerError, ValueError):
    """A file name from a checkpoint that would land outside the target directory."""


class UnsupportedCheckpointError(PrefectTinkerError, ValueError):
    """A checkpoint whose type cannot be used for the requested operation."""


class AdapterValidationError(PrefectTinkerError, ValueError):
    """An adapter directory that is not a loadable PEFT LoRA adapter."""


class TinkerServiceError(PrefectTinkerError):
    """A Tinker request that failed for a reason that may pass (connection, 408/409/429/5xx).

    Raised in place of the SDK's exception, which carries the request and its API key header.
    """


class HubError(PrefectTinkerError):
    """A Hugging Face Hub push that was refused or failed."""


class MissingExtraError(PrefectTinkerError, ImportError):
    """A feature whose optional dependencies are not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra: pip install 'prefect-tinker[{extra}]'"
        )


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call may succeed.

    Connection errors, timeouts, HTTP 408/409/429/5xx and the SDK's retryable errors are
    transient; bad requests, auth failures, not-found and validation errors are not.

    Example:
        >>> is_transient(TimeoutError())
        True
        >>> is_transient(ValueError("bad rank"))
        False
    """
    import httpx
    import tinker
    from tinker.lib.retryable_exception import RetryableException

    if isinstance(exc, PrefectTinkerError):
        transient = isinstance(exc, DownloadError | TinkerServiceError)
        return transient and not isinstance(exc, IntegrityError)
    if isinstance(exc, tinker.APIConnectionError | RetryableException):
        return True
    if isinstance(exc, tinker.APIStatusError):
        return exc.status_code in TRANSIENT_STATUS_CODES
    if isinstance(exc, tinker.RequestFailedError):
        return str(getattr(exc.category, "value", exc.category)).lower() == "server"
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in TRANSIENT_STATUS_CODES
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError | socket.timeout)
