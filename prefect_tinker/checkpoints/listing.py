"""Ask the service which runs and checkpoints belong to a `run_key`, and where to resume.

Nothing here reads local files: a fresh worker finds the same resume point as the one that
crashed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prefect_tinker.checkpoints.state import CheckpointLike, CheckpointState
from prefect_tinker.errors import ResumeMismatchError
from prefect_tinker.paths import TinkerPath

if TYPE_CHECKING:
    import tinker

_PAGE = 100


@dataclass(frozen=True)
class ResumePoint:
    """The newest live training checkpoint of a run_key, and the loop state it carries."""

    tinker_path: str
    run_id: str
    state: CheckpointState
    saved_at: datetime
    expires_at: datetime | None

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def final(self) -> bool:
        return self.state.final


def list_runs(rest: tinker.RestClient, run_key: str) -> list[tinker.TrainingRun]:
    """Training runs of the caller whose `user_metadata["run_key"]` is `run_key`."""
    runs: list[tinker.TrainingRun] = []
    offset = 0
    while True:
        page = rest.list_training_runs(limit=_PAGE, offset=offset).result()
        runs.extend(r for r in page.training_runs if _run_key_of(r) == run_key)
        offset += len(page.training_runs)
        if not page.training_runs or offset >= page.cursor.total_count:
            return runs


def _run_key_of(run: tinker.TrainingRun) -> str | None:
    return (run.user_metadata or {}).get("run_key")


def list_run_checkpoints(rest: tinker.RestClient, run_key: str) -> list[tinker.Checkpoint]:
    """Every checkpoint (all types) of every training run of `run_key`, oldest first.

    Example:
        >>> for cp in list_run_checkpoints(rest, "sft-1a2b3c4d5e6f7a8b"):  # doctest: +SKIP
        ...     print(cp.tinker_path, cp.expires_at)
    """
    futures = [rest.list_checkpoints(run.training_run_id) for run in list_runs(rest, run_key)]
    checkpoints = [cp for future in futures for cp in future.result().checkpoints]
    return sorted(checkpoints, key=lambda cp: (cp.time, cp.tinker_path))


def is_live(checkpoint: CheckpointLike, now: datetime | None = None) -> bool:
    """False once the checkpoint's TTL has passed."""
    now = now or datetime.now(UTC)
    return checkpoint.expires_at is None or checkpoint.expires_at > now


def find_resume_point(
    rest: tinker.RestClient,
    run_key: str,
    *,
    config_hash: str | None = None,
    data_fingerprint: str | None = None,
    now: datetime | None = None,
) -> ResumePoint | None:
    """Newest live training checkpoint of the run named `run_key`, or None for a fresh start.

    With `config_hash` / `data_fingerprint`, only checkpoints written with the same ones
    count; if the run_key has checkpoints but none match, `ResumeMismatchError` says which
    value differs, because continuing would silently train a different model.

    Example:
        >>> point = find_resume_point(rest, "my-run")  # doctest: +SKIP
        >>> point.tinker_path, point.step, point.final  # doctest: +SKIP
        ('tinker://…:train:1/weights/step-000020', 20, False)
    """
    candidates = _resumable(list_run_checkpoints(rest, run_key), run_key, now)
    if not candidates:
        return None
    matching = [
        c
        for c in candidates
        if (config_hash is None or c.state.config_hash == config_hash)
        and (data_fingerprint is None or c.state.data_fingerprint == data_fingerprint)
    ]
    if not matching:
        newest = candidates[-1]
        raise ResumeMismatchError(
            f"run_key {run_key!r} already has checkpoints (newest {newest.tinker_path}) written "
            f"with config hash {newest.state.config_hash!r} and data fingerprint "
            f"{newest.state.data_fingerprint!r}, but this run has config hash {config_hash!r} "
            f"and data fingerprint {data_fingerprint!r}. Restore the original settings and "
            "dataset to resume, or use another run_key (leave it unset to derive one from "
            "config and data)."
        )
    return matching[-1]


def _resumable(
    checkpoints: Iterable[tinker.Checkpoint], run_key: str, now: datetime | None
) -> list[ResumePoint]:
    points = []
    for cp in checkpoints:
        state = CheckpointState.from_metadata(cp.user_metadata)
        if cp.checkpoint_type != "training" or state is None or state.run_key != run_key:
            continue
        if not is_live(cp, now):
            continue
        path = TinkerPath.parse(cp.tinker_path)
        points.append(ResumePoint(cp.tinker_path, path.run_id, state, cp.time, cp.expires_at))
    return sorted(points, key=lambda p: (p.state.step, p.saved_at))
