"""Supervised LoRA training on Tinker: config, pipelined loop with checkpoints, exact resume.

Example:
    >>> from prefect_tinker.training import TrainConfig, train
    >>> cfg = TrainConfig(base_model="Qwen/Qwen3-0.6B", learning_rate=1e-4, batch_size=4)
    >>> result = train(service_client, dataset, cfg)  # doctest: +SKIP
"""

from prefect_tinker.checkpoints import ResumePoint, find_resume_point
from prefect_tinker.training.config import LoraSettings, LrSchedule, TrainConfig
from prefect_tinker.training.loop import (
    CheckpointInfo,
    StepMetrics,
    TrainResult,
    train,
    weighted_tokens,
)
from prefect_tinker.training.schedule import BatchPlan, BatchSource

__all__ = [
    "BatchPlan",
    "BatchSource",
    "CheckpointInfo",
    "LoraSettings",
    "LrSchedule",
    "ResumePoint",
    "StepMetrics",
    "TrainConfig",
    "TrainResult",
    "find_resume_point",
    "train",
    "weighted_tokens",
]
