"""SDK errors become typed errors that keep transient faults retryable and drop the API key."""

from __future__ import annotations

import pickle

import httpx
import pytest
import tinker

from prefect_tinker.errors import (
    CheckpointNotFound,
    ConfigurationError,
    TinkerServiceError,
    is_transient,
)
from prefect_tinker.export.publish import sdk_errors, set_ttl

KEY = "tml-secret-key-for-this-test"


def _status_error(status: int) -> tinker.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:9/api/v1/x", headers={"X-API-Key": KEY})
    response = httpx.Response(status, json={"detail": "nope"}, request=request)
    cls = {404: tinker.NotFoundError, 400: tinker.BadRequestError}.get(
        status, tinker.APIStatusError
    )
    return cls("failed", response=response, body={"detail": "nope"})


@pytest.mark.parametrize(
    ("status", "expected", "transient"),
    [
        (503, TinkerServiceError, True),
        (429, TinkerServiceError, True),
        (404, CheckpointNotFound, False),
        (400, ConfigurationError, False),
        (410, ConfigurationError, False),
    ],
)
def test_status_errors_are_typed_and_carry_no_key(status, expected, transient):
    with pytest.raises(expected) as info, sdk_errors("tinker://r:train:0/weights/a"):
        raise _status_error(status)
    assert is_transient(info.value) is transient
    assert KEY.encode() not in pickle.dumps(info.value)


def test_connection_errors_stay_transient():
    request = httpx.Request("GET", "http://127.0.0.1:9/", headers={"X-API-Key": KEY})
    with pytest.raises(TinkerServiceError) as info, sdk_errors("the runs"):
        raise tinker.APIConnectionError(request=request)
    assert is_transient(info.value)
    assert KEY.encode() not in pickle.dumps(info.value)


@pytest.mark.parametrize("ttl", [0, 3599, 10 * 366 * 24 * 3600])
def test_ttl_outside_the_service_range_is_refused_before_any_call(ttl):
    with pytest.raises(ConfigurationError, match="3600 s"):
        set_ttl(object(), "tinker://r:train:0/weights/a", ttl)
