"""Plain values that tasks return: serialisable, no SDK clients or futures inside."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prefect_tinker.paths import CheckpointType


class CheckpointInfo(BaseModel):
    """One checkpoint as the service lists it."""

    model_config = ConfigDict(frozen=True)

    tinker_path: str
    checkpoint_type: CheckpointType
    time: datetime
    size_bytes: int | None = None
    public: bool = False
    expires_at: datetime | None = None
    user_metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """The last part of the tinker path, e.g. `step-20`."""
        return self.tinker_path.rsplit("/", 1)[-1]

    @classmethod
    def from_sdk(cls, ckpt: Any) -> CheckpointInfo:
        return cls(
            tinker_path=ckpt.tinker_path,
            checkpoint_type=ckpt.checkpoint_type,
            time=ckpt.time,
            size_bytes=ckpt.size_bytes,
            public=ckpt.public,
            expires_at=ckpt.expires_at,
            user_metadata=dict(ckpt.user_metadata or {}),
        )


class TrainingRunInfo(BaseModel):
    """One training run as the service lists it."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    base_model: str
    lora_rank: int | None = None
    corrupted: bool = False
    last_request_time: datetime
    last_checkpoint: str | None = None
    user_metadata: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_sdk(cls, run: Any) -> TrainingRunInfo:
        return cls(
            run_id=run.training_run_id,
            base_model=run.base_model,
            lora_rank=run.lora_rank,
            corrupted=run.corrupted,
            last_request_time=run.last_request_time,
            last_checkpoint=run.last_checkpoint.tinker_path if run.last_checkpoint else None,
            user_metadata=dict(run.user_metadata or {}),
        )


class Sample(BaseModel):
    """One sampled continuation."""

    tokens: list[int]
    logprobs: list[float] | None = None
    stop_reason: str
    text: str | None = None


class TrainSummary(BaseModel):
    """What one call of the training task did."""

    run_key: str
    run_id: str
    final_checkpoint: str
    final_step: int
    steps_run: int
    resumed_from: str | None = None
    metrics: list[dict[str, float]] = Field(default_factory=list)

    @property
    def first_loss(self) -> float | None:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[0] if losses else None

    @property
    def last_loss(self) -> float | None:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[-1] if losses else None


class ModelCapability(BaseModel):
    """One base model the service offers."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    max_context_length: int | None = None
    trainable: bool | None = None
    sampleable: bool | None = None
