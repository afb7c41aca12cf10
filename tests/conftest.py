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
