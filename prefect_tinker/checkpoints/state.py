"""The loop state a training checkpoint carries in its `user_metadata`.

Tinker metadata values are strings, so every field is encoded as text here and parsed back
with checks. A checkpoint whose metadata does not parse is not one of ours and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

FORMAT = "prefect-tinker/1"


@dataclass(frozen=True)
class CheckpointState:
    """Where a run stood when a checkpoint was saved (after `step` optimizer steps).

    Example:
        >>> s = CheckpointState("k", step=4, total_steps=8, epoch=1, next_batch=0,
        ...                     data_fingerprint="d", config_hash="c", final=False)
        >>> CheckpointState.from_metadata(s.to_metadata()) == s
        True
    """

    run_key: str
    step: int
    total_steps: int
    epoch: int
    next_batch: int
    data_fingerprint: str
    config_hash: str
    final: bool

    def to_metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "run_key": self.run_key,
            "step": str(self.step),
            "total_steps": str(self.total_steps),
            "epoch": str(self.epoch),
            "next_batch": str(self.next_batch),
            "data_fingerprint": self.data_fingerprint,
            "config_hash": self.config_hash,
            "final": "true" if self.final else "false",
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> CheckpointState | None:
        """The state in `metadata`, or None when it was not written by prefect-tinker."""
        if not metadata or metadata.get("format") != FORMAT:
            return None
        try:
            state = cls(
                run_key=metadata["run_key"],
                step=int(metadata["step"]),
                total_steps=int(metadata["total_steps"]),
                epoch=int(metadata["epoch"]),
                next_batch=int(metadata["next_batch"]),
                data_fingerprint=metadata["data_fingerprint"],
                config_hash=metadata["config_hash"],
                final={"true": True, "false": False}[metadata["final"]],
            )
        except (KeyError, ValueError):
            return None
        if not 0 <= state.step <= state.total_steps or state.final != (
            state.step == state.total_steps
        ):
            return None
        return state


def run_metadata(run_key: str, config_hash: str) -> dict[str, str]:
    """`user_metadata` of a training run created by `train`."""
    return {"format": FORMAT, "run_key": run_key, "config_hash": config_hash}


class CheckpointLike(Protocol):
    """What housekeeping reads of a checkpoint: `tinker.Checkpoint` or any listing of it."""

    @property
    def tinker_path(self) -> str: ...
    @property
    def checkpoint_type(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def public(self) -> bool: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def user_metadata(self) -> dict[str, str] | None: ...
