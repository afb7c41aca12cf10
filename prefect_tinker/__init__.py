"""prefect-tinker: Prefect 3 pipelines for Tinker LoRA fine-tuning.

`import prefect_tinker` never imports torch: the local engine loads only when the embedded
service runs. Blocks are imported here so `prefect block register -m prefect_tinker` finds
them; tasks and flows load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect_tinker.blocks import HuggingFaceCredentials, TinkerCredentials, TinkerLoraConfig

__version__ = "0.1.0"

_LAZY = {
    "sft_pipeline": "prefect_tinker.flows.sft",
    "SftResult": "prefect_tinker.flows.sft",
    "CheckpointPolicy": "prefect_tinker.flows.sft",
    "EvalOptions": "prefect_tinker.flows.sft",
    "ExportOptions": "prefect_tinker.flows.sft",
    "checkpoint_housekeeping": "prefect_tinker.flows.housekeeping",
    "export_checkpoint": "prefect_tinker.flows.export",
    "HousekeepingResult": "prefect_tinker.flows.housekeeping",
}

__all__ = [
    "HuggingFaceCredentials",
    "TinkerCredentials",
    "TinkerLoraConfig",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_tinker' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
