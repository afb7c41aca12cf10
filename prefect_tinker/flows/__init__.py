"""Prefect flows: the SFT pipeline and checkpoint housekeeping (each usable as a subflow).

The export flow lives in `prefect_tinker.flows.export`.
"""

from prefect_tinker.flows.export import ExportResult, export_checkpoint
from prefect_tinker.flows.housekeeping import HousekeepingResult, checkpoint_housekeeping
from prefect_tinker.flows.sft import (
    CheckpointPolicy,
    EvalOptions,
    ExportOptions,
    SftResult,
    sft_pipeline,
)

__all__ = [
    "CheckpointPolicy",
    "EvalOptions",
    "ExportOptions",
    "ExportResult",
    "HousekeepingResult",
    "SftResult",
    "checkpoint_housekeeping",
    "export_checkpoint",
    "sft_pipeline",
]
