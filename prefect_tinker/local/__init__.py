"""The embedded Tinker-compatible local service.

Importing this package is cheap (no torch); the training engine is imported when the service
first needs it.

Example:
    >>> from prefect_tinker.local import LocalTinker
    >>> with LocalTinker(data_dir="/tmp/tinker-local") as svc:   # doctest: +SKIP
    ...     client = tinker.ServiceClient(base_url=svc.base_url, api_key=svc.api_key)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_tinker.local.faults import FaultConfig, ServiceStats
    from prefect_tinker.local.server import LocalTinker, ensure_local_service

__all__ = ["FaultConfig", "LocalTinker", "ServiceStats", "ensure_local_service"]

_EXPORTS = {
    "FaultConfig": "prefect_tinker.local.faults",
    "ServiceStats": "prefect_tinker.local.faults",
    "LocalTinker": "prefect_tinker.local.server",
    "ensure_local_service": "prefect_tinker.local.server",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_tinker.local' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
