"""One classification of transient faults decides every retry."""

from __future__ import annotations

import httpx
import pytest
import tinker

from prefect_tinker.errors import (
    DownloadError,
    IntegrityError,
    InvalidTinkerPath,
    MissingExtraError,
    is_transient,
)


def _status_error(cls: type[tinker.APIStatusError], code: int) -> tinker.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/api/v1/optim_step")
    response = httpx.Response(code, request=request, json={"detail": "x"})
    return cls("x", response=response, body={"detail": "x"})


@pytest.mark.parametrize("code", [408, 409, 429, 500, 503])
def test_retryable_status_codes_are_transient(code):
    assert is_transient(_status_error(tinker.APIStatusError, code))


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (tinker.BadRequestError, 400),
        (tinker.AuthenticationError, 401),
        (tinker.NotFoundError, 404),
        (tinker.UnprocessableEntityError, 422),
    ],
)
def test_permanent_status_codes_are_not(cls, code):
    assert not is_transient(_status_error(cls, code))


def test_connection_and_timeout_errors_are_transient():
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert is_transient(tinker.APIConnectionError(request=request))
    assert is_transient(tinker.APITimeoutError(request=request))
    assert is_transient(httpx.ConnectError("refused", request=request))
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())


def test_failed_futures_are_transient_only_for_server_faults():
    assert is_transient(tinker.RequestFailedError("boom", "r1", "server"))
    assert not is_transient(tinker.RequestFailedError("bad loss", "r1", "user"))
    category = tinker.types.RequestErrorCategory
    assert is_transient(tinker.RequestFailedError("boom", "r1", category.Server))
    assert not is_transient(tinker.RequestFailedError("bad", "r1", category.User))


def test_our_own_errors():
    assert is_transient(DownloadError("cut"))
    assert not is_transient(IntegrityError("sha256 mismatch"))
    assert not is_transient(InvalidTinkerPath("bad"))
    assert not is_transient(ValueError("bad rank"))


def test_missing_extra_names_the_install_line():
    assert "pip install 'prefect-tinker[local]'" in str(
        MissingExtraError("The local service", "local")
    )
