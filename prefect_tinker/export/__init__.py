"""Export: download checkpoints, inspect and validate adapters, push to the Hugging Face Hub,
and manage checkpoints on Tinker (publish, TTL, delete).

Everything here is plain Python, usable without Prefect; `merge_adapter` needs the `merge` extra
and is imported from `prefect_tinker.export.merge`.

Example:
    ```python
    from prefect_tinker.export import download, validate_adapter

    manifest = download(rest, "tinker://run:train:0/external_weights/final", "./adapter")
    report = validate_adapter("./adapter")
    ```
"""

from prefect_tinker.export.adapters import (
    AdapterInfo,
    ValidationReport,
    inspect_adapter,
    validate_adapter,
)
from prefect_tinker.export.card import ModelCard
from prefect_tinker.export.download import ProgressUpdate, download
from prefect_tinker.export.hub import HubPushResult, push_to_hub
from prefect_tinker.export.manifest import MANIFEST_NAME, FileEntry, Manifest
from prefect_tinker.export.publish import delete, publish, set_ttl, unpublish

__all__ = [
    "MANIFEST_NAME",
    "AdapterInfo",
    "FileEntry",
    "HubPushResult",
    "Manifest",
    "ModelCard",
    "ProgressUpdate",
    "ValidationReport",
    "delete",
    "download",
    "inspect_adapter",
    "publish",
    "push_to_hub",
    "set_ttl",
    "unpublish",
    "validate_adapter",
]
