"""`export_checkpoint`: download → validate → (merge) → (Hub push) → (Tinker publish).

Ends with a model-card markdown artifact, a table artifact of the files and their sha256, and
a `tinker.adapter.exported` event. A re-run for the same checkpoint and options downloads
nothing: the download task's cache key holds only while the target's manifest still matches
its files, and the download itself transfers only what is missing or damaged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field

from prefect_tinker.blocks import HuggingFaceCredentials, TinkerCredentials
from prefect_tinker.paths import TinkerPath
from prefect_tinker.tasks.export import (
    AdapterSummary,
    DownloadResult,
    HubPush,
    download_checkpoint,
    merge_adapter_dir,
    push_adapter_to_hub,
    validate_adapter_dir,
)

ADAPTER_EXPORTED = "tinker.adapter.exported"


class ExportResult(BaseModel):
    """What `export_checkpoint` produced."""

    tinker_path: str
    external_path: str | None = Field(
        None, description="The external_weights checkpoint that was downloaded (or published)."
    )
    adapter_dir: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)
    bytes_transferred: int = 0
    adapter: AdapterSummary | None = None
    merged_dir: str | None = None
    hub: HubPush | None = None
    published: bool = False


def default_export_dir(tinker_path: str) -> Path:
    """`$PREFECT_TINKER_HOME/adapters/<run>/<name>` for a checkpoint path."""
    path = TinkerPath.parse(tinker_path)
    home = Path(os.environ.get("PREFECT_TINKER_HOME", "~/.prefect-tinker")).expanduser()
    run = re.sub(r"[^A-Za-z0-9._-]+", "_", path.run_id)
    return home / "adapters" / run / f"{path.segment}-{path.name}"


@flow(name="export-checkpoint", log_prints=False)
def export_checkpoint(
    credentials: TinkerCredentials,
    tinker_path: str,
    dest: str | None = None,
    download: bool = True,
    external_weights: bool = True,
    ttl_seconds: int | None = None,
    base_model_dir: str | None = None,
    merge_dir: str | None = None,
    hf_repo_id: str | None = None,
    hf_credentials: HuggingFaceCredentials | None = None,
    hf_revision: str | None = None,
    hf_private: bool = True,
    hf_force: bool = False,
    publish: bool = False,
    license: str = "apache-2.0",
    training_metrics: dict[str, float] | None = None,
    dataset_fingerprint: str | None = None,
    concurrency: int = 4,
) -> ExportResult:
    """Export a Tinker checkpoint as a validated PEFT adapter, and optionally share it.

    Args:
        credentials: the Tinker service to export from.
        tinker_path: a `weights/` (training) or `external_weights/` checkpoint.
        dest: download directory (default: `$PREFECT_TINKER_HOME/adapters/<run>/<name>`).
        download: download and validate (needed for merge and Hub push).
        external_weights: for a `weights/` path, save a lasting `external_weights` checkpoint
            (cached per path) and download that; False exports a temporary copy encrypted to
            a fresh key instead, deleted after the download.
        ttl_seconds: TTL of that external checkpoint (None: never expires).
        base_model_dir: local base model directory, to validate shapes and to merge.
        merge_dir: write base + adapter merged here (needs `base_model_dir` and the `merge` extra).
        hf_repo_id: push the adapter and its model card to this Hub repo.
        hf_credentials: Hub token (default: HF_TOKEN / HF_ENDPOINT from the environment).
        hf_revision / hf_private / hf_force: tag name, repo visibility, push over another run.
        publish: make the checkpoint public on Tinker (the external one when there is one).
        license / training_metrics / dataset_fingerprint: model card content (the fingerprint
            defaults to the one prefect-tinker training records on the checkpoint).

    Example:
        ```python
        from prefect_tinker import TinkerCredentials
        from prefect_tinker.flows.export import export_checkpoint

        export_checkpoint(TinkerCredentials.load("BLOCK_NAME"),
                          "tinker://run:train:0/weights/final", hf_repo_id="me/my-adapter")
        ```
    """
    from prefect_tinker.errors import ConfigurationError
    from prefect_tinker.tasks import publish_checkpoint

    path = str(TinkerPath.parse(tinker_path))
    if (merge_dir or hf_repo_id) and not download:
        raise ConfigurationError("merge_dir and hf_repo_id need download=True (local files).")
    if merge_dir and not base_model_dir:
        raise ConfigurationError("merge_dir needs base_model_dir, the local base model to merge.")
    result = ExportResult(tinker_path=path)
    segment = TinkerPath.parse(path).segment
    if segment == "external_weights":
        result.external_path = path
    elif segment == "weights" and external_weights:
        result.external_path = _external_checkpoint(credentials, path, ttl_seconds)
    source = result.external_path or path

    if download:
        target = str(Path(dest).expanduser()) if dest else str(default_export_dir(path))
        downloaded: DownloadResult = download_checkpoint(credentials, source, target, concurrency)
        result.adapter_dir = downloaded.adapter_dir
        result.files = [f.model_dump() for f in downloaded.files]
        result.bytes_transferred = downloaded.bytes_transferred
        result.adapter = validate_adapter_dir(downloaded.adapter_dir, base=base_model_dir)
        if merge_dir:
            result.merged_dir = merge_adapter_dir(
                downloaded.adapter_dir, str(base_model_dir), merge_dir
            )
        card = _card_fields(credentials, path, license, training_metrics, dataset_fingerprint)
        if hf_repo_id:
            result.hub = push_adapter_to_hub(
                downloaded.adapter_dir,
                hf_repo_id,
                hf_credentials or HuggingFaceCredentials(),
                card,
                revision=hf_revision,
                force=hf_force,
                private=hf_private,
            )
        _artifacts(downloaded, card)
    if publish:
        publish_checkpoint(credentials, source)
        result.published = True

    _emit_exported(result)
    get_run_logger().info("Exported %s (%d bytes transferred)", path, result.bytes_transferred)
    return result


def _external_checkpoint(credentials: TinkerCredentials, source: str, ttl: int | None) -> str:
    """A lasting external_weights copy of `source` (cached per path; saved again if it is gone)."""
    from prefect_tinker.tasks import list_checkpoints, save_weights_external

    name = f"{TinkerPath.parse(source).name[:190]}-export"
    path = save_weights_external(credentials, source, name, ttl_seconds=ttl)
    try:
        run_id = TinkerPath.parse(path).run_id
        live = {c.tinker_path for c in list_checkpoints(credentials, run_id)}
    except Exception:  # noqa: BLE001 - a run that is gone holds nothing live
        live = set()
    if path not in live:
        path = save_weights_external.with_options(refresh_cache=True)(
            credentials, source, name, ttl_seconds=ttl
        )
    return path


def _card_fields(
    credentials: TinkerCredentials,
    tinker_path: str,
    license: str,
    training_metrics: dict[str, float] | None,
    dataset_fingerprint: str | None,
) -> dict[str, Any]:
    """ModelCard fields, with the dataset fingerprint and step from the checkpoint's metadata."""
    metrics = dict(training_metrics or {})
    if dataset_fingerprint is None or "step" not in metrics:
        state = _checkpoint_state(credentials, tinker_path)
        if state is not None:
            dataset_fingerprint = dataset_fingerprint or state.data_fingerprint
            metrics.setdefault("step", float(state.step))
    return {
        "tinker_path": tinker_path,
        "license": license,
        "training_metrics": metrics,
        "dataset_fingerprint": dataset_fingerprint,
    }


def _checkpoint_state(credentials: TinkerCredentials, tinker_path: str) -> Any:
    """The loop state prefect-tinker training stored on the checkpoint, if any."""
    from prefect_tinker.checkpoints.state import CheckpointState

    path = TinkerPath.parse(tinker_path)
    try:
        checkpoints = credentials.get_rest_client().list_checkpoints(path.run_id).result()
    except Exception:  # noqa: BLE001 - the card is complete without it
        return None
    for cp in checkpoints.checkpoints:
        if cp.tinker_path == str(path):
            return CheckpointState.from_metadata(getattr(cp, "user_metadata", None))
    return None


def _artifacts(downloaded: DownloadResult, card: dict[str, Any]) -> None:
    from prefect_tinker.export import Manifest, ModelCard, inspect_adapter
    from prefect_tinker.tasks.export import _artifact_key

    adapter_dir = Path(downloaded.adapter_dir)
    markdown = ModelCard(**card).render(inspect_adapter(adapter_dir), Manifest.read(adapter_dir))
    create_markdown_artifact(
        markdown=markdown,
        key=_artifact_key("model-card", downloaded.tinker_path),
        description=f"Model card of {downloaded.tinker_path}",
    )
    create_table_artifact(
        table=[{"file": f.path, "bytes": f.size, "sha256": f.sha256} for f in downloaded.files],
        key=_artifact_key("export-files", downloaded.tinker_path),
        description=f"Files exported from {downloaded.tinker_path} to {downloaded.adapter_dir}",
    )


def _emit_exported(result: ExportResult) -> None:
    path = TinkerPath.parse(result.tinker_path)
    emit_event(
        event=ADAPTER_EXPORTED,
        resource={
            "prefect.resource.id": f"tinker.checkpoint.{result.tinker_path}",
            "prefect.resource.name": path.name,
            "tinker.run-id": path.run_id,
        },
        payload={
            "tinker_path": result.tinker_path,
            "external_path": result.external_path,
            "adapter_dir": result.adapter_dir,
            "bytes_transferred": result.bytes_transferred,
            "files": result.files,
            "hub": result.hub.model_dump() if result.hub else None,
            "published": result.published,
            "merged_dir": result.merged_dir,
        },
    )


__all__ = ["ADAPTER_EXPORTED", "ExportResult", "default_export_dir", "export_checkpoint"]
