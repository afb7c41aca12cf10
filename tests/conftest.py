"""Test-wide environment: offline, no telemetry, an isolated Prefect home."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="prefect-tinker-tests-")
os.environ.update(
    {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": os.path.join(_HOME, "prefect"),
        "TINKER_TELEMETRY": "0",
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PREFECT_TINKER_HOME": os.path.join(_HOME, "prefect-tinker"),
    }
)
os.environ.pop("TINKER_CREDENTIAL_CMD", None)
os.environ.pop("TINKER_API_KEY", None)
os.environ.pop("TINKER_BASE_URL", None)


import pytest  # noqa: E402

LOCAL_TEST_KEYS = ("tml-test-alice", "tml-test-bob")


@pytest.fixture(scope="session")
def local_tinker(tmp_path_factory):
    """One in-process local Tinker service for the whole test session (keys alice, bob)."""
    from prefect_tinker.local import LocalTinker

    with LocalTinker(tmp_path_factory.mktemp("local-tinker"), api_keys=LOCAL_TEST_KEYS) as svc:
        yield svc


@pytest.fixture
def service_client(local_tinker):
    """An official `tinker.ServiceClient` on the local service, as alice; closed after the test."""
    import tinker

    client = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    yield client
    client.close("success").result(timeout=30)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Quiet the SDK's background heartbeats once the suite is over.

    Tests that kill a local service leave SDK clients whose session heartbeat keeps failing
    until the interpreter exits; their warnings would land on log handlers already closed.
    """
    import logging

    logging.getLogger("tinker").setLevel(logging.CRITICAL)
