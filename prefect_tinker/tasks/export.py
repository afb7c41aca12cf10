"""Prefect tasks for export: download a checkpoint, validate it, merge it, push it to the Hub.

Each wraps one `prefect_tinker.export` call, retries only transient faults, and returns plain
values. Publishing, TTLs and deletion are the checkpoint tasks in `prefect_tinker.tasks`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from prefect_tinker.blocks import HuggingFaceCredentials, TinkerCredentials
from prefect_tinker.paths import TinkerPath
from prefect_tinker.retries import RETRY_OPTIONS
from prefect_tinker.tasks.progress import ProgressReporter
from prefect_tinker.tasks.training import endpoint_key

if TYPE_CHECKING:
    from prefect.context import TaskRunContext

    from prefect_tinker.export import ProgressUpdate


class ExportedFile(BaseModel):
    """One downloaded file."""

    path: str
    size: int
    sha256: str


class DownloadResult(BaseModel):
    """A finished download: where it is, what it holds, what moved over the network."""

    tinker_path: str
    adapter_dir: str
    files: list[ExportedFile]
    total_size: int
    bytes_transferred: int = Field(description="0 when the directory already held it intact.")


class AdapterSummary(BaseModel):
    """The validated adapter's key facts and the serving-stack warnings."""

    base_model: str | None
    rank: int | None
    alpha: float | None
    target_modules: list[str] | str
    parameter_count: int
    warnings: list[str]


class HubPush(BaseModel):
    repo_id: str
    revision: str
    commit_oid: str | None
    url: str
    pushed: bool


def download_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Key on endpoint + checkpoint path + target + options + the target's manifest, and only
    while that manifest still matches the files on disk.

    A missing or damaged target gets no key, so the task runs and the idempotent download
    repairs what is needed; from the first run that finds the target intact on, re-runs are
    cache hits. A cached result is therefore never stale.
    """
    from prefect_tinker.export import Manifest

    dest = Path(parameters["dest"]).expanduser().absolute()
    path = parameters["tinker_path"]
    manifest = Manifest.read(dest)
    if manifest is None or manifest.tinker_path != path or manifest.bad_files(dest):
        return None
    parts = [
        context.task.name,
        endpoint_key(parameters["credentials"]),
        path,
        str(dest),
        f"concurrency={parameters.get('concurrency')}",
        hashlib.sha256(json.dumps(manifest.to_dict()).encode()).hexdigest(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class _ArtifactProgress:
    """Feeds download progress into a Prefect progress artifact (posted off-thread)."""

    def __init__(self, key: str) -> None:
        self._reporter = ProgressReporter(total=1000, key=key, description="Downloading")
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}
        self._totals: dict[str, int] = {}

    def __call__(self, update: ProgressUpdate) -> None:
        with self._lock:
            self._done[update.name] = update.completed
            if update.total is not None:
                self._totals[update.name] = update.total
            done, total = sum(self._done.values()), sum(self._totals.values()) or 1
        self._reporter.update(min(1000, int(1000 * done / total)), f"{done:,} of {total:,} bytes")

    def close(self) -> None:
        self._reporter.update(1000, "done")
        self._reporter.close()


def _artifact_key(prefix: str, tinker_path: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    import re

    return f"{prefix}-" + re.sub(r"[^a-z0-9-]+", "-", tinker_path.lower()).strip("-")[:80]


@task(name="Download Tinker checkpoint", cache_key_fn=download_cache_key, **RETRY_OPTIONS)
def download_checkpoint(
    credentials: TinkerCredentials,
    tinker_path: str,
    dest: str,
    concurrency: int = 4,
) -> DownloadResult:
    """Download `tinker_path` into `dest` (verified, resumable; a no-op when `dest` has it).

    Example:
        ```python
        result = download_checkpoint(creds, "tinker://run:train:0/weights/final", "./adapter")
        ```
    """
    from prefect_tinker.export import download

    path = TinkerPath.parse(tinker_path)
    service = credentials.get_service_client() if path.segment == "weights" else None
    progress = _ArtifactProgress(_artifact_key("download", tinker_path))
    try:
        manifest = download(
            credentials.get_rest_client(),
            str(path),
            dest,
            service=service,
            concurrency=concurrency,
            progress=progress,
            overwrite=True,
        )
    finally:
        progress.close()
    get_run_logger().info(
        "Downloaded %s to %s: %d files, %d bytes transferred",
        path,
        dest,
        len(manifest.files),
        manifest.bytes_transferred,
    )
    return DownloadResult(
        tinker_path=str(path),
        adapter_dir=str(Path(dest).expanduser().absolute()),
        files=[ExportedFile(path=f.path, size=f.size, sha256=f.sha256) for f in manifest.files],
        total_size=manifest.total_size,
        bytes_transferred=manifest.bytes_transferred,
    )


@task(name="Validate adapter", cache_policy=NO_CACHE)
def validate_adapter_dir(adapter_dir: str, base: str | None = None) -> AdapterSummary:
    """Check the adapter loads (header-only); fail with every problem listed, keep warnings."""
    from prefect_tinker.export import validate_adapter

    report = validate_adapter(adapter_dir, base=base)
    info = report.info
    assert info is not None  # validate_adapter raised if the directory was unreadable
    for warning in report.warnings:
        get_run_logger().warning("adapter %s: %s", adapter_dir, warning)
    return AdapterSummary(
        base_model=info.base_model,
        rank=info.rank,
        alpha=info.alpha,
        target_modules=info.target_modules,
        parameter_count=info.parameter_count,
        warnings=report.warnings,
    )


@task(name="Merge adapter into base model", cache_policy=NO_CACHE)
def merge_adapter_dir(adapter_dir: str, base_dir: str, out_dir: str) -> str:
    """Write base + adapter merged into `out_dir`; skipped when it already holds this merge."""
    from prefect_tinker.export import Manifest
    from prefect_tinker.export.merge import merge_adapter

    marker = Path(out_dir) / "merged_from.json"
    manifest = Manifest.read(Path(adapter_dir))
    source = {
        "adapter": manifest.to_dict()["files"] if manifest else str(adapter_dir),
        "base_dir": str(Path(base_dir).absolute()),
    }
    if marker.is_file() and json.loads(marker.read_text()) == source:
        return str(Path(out_dir).absolute())
    merged = merge_adapter(adapter_dir, base_dir, out_dir, overwrite=True)
    marker.write_text(json.dumps(source, indent=2) + "\n")
    return str(Path(merged).absolute())


@task(name="Push adapter to the Hugging Face Hub", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def push_adapter_to_hub(
    adapter_dir: str,
    repo_id: str,
    hf_credentials: HuggingFaceCredentials,
    card: dict[str, Any],
    revision: str | None = None,
    force: bool = False,
    private: bool = True,
) -> HubPush:
    """Push the adapter and its model card; a no-op when the Hub already has this checkpoint.

    `card` holds `ModelCard` fields (tinker_path, license, training_metrics, ...).
    """
    from prefect_tinker.export import ModelCard, push_to_hub

    result = push_to_hub(
        adapter_dir,
        repo_id,
        token=hf_credentials.get_token(),
        endpoint=hf_credentials.get_endpoint(),
        card=ModelCard(**card),
        revision=revision,
        force=force,
        private=private,
    )
    return HubPush(
        repo_id=result.repo_id,
        revision=result.revision,
        commit_oid=result.commit_oid,
        url=result.url,
        pushed=result.pushed,
    )


__all__ = [
    "AdapterSummary",
    "DownloadResult",
    "ExportedFile",
    "HubPush",
    "download_cache_key",
    "download_checkpoint",
    "merge_adapter_dir",
    "push_adapter_to_hub",
    "validate_adapter_dir",
]
