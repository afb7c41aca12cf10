"""Plain data types of the local training engine (numpy only, so importing them is cheap).

`prefect_tinker.local.engine` re-exports all of them; the service converts wire payloads into
these and back without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from prefect_tinker.errors import PrefectTinkerError

# Tinker-like LoRA scaling. PEFT scales the update by lora_alpha / r; Tinker's adapters (and the
# cookbook's exported `adapter_config.json`) use alpha = 32 for every rank.
LORA_ALPHA = 32


class EngineError(PrefectTinkerError, ValueError):
    """A request the engine cannot serve because of its values.

    Unknown base model, unknown loss function, a token id outside the vocabulary, a sequence
    longer than the context: the message names the bad value and what would work.
    """


@dataclass(frozen=True)
class LoraSpec:
    """Which LoRA adapter to train: rank, init seed and which layer groups get one."""

    rank: int
    seed: int | None = None
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True


@dataclass(frozen=True)
class AdamParams:
    """One AdamW step's hyper-parameters (weight decay is decoupled; grad_clip_norm 0 = off)."""

    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


@dataclass
class DatumArrays:
    """One training example: model input tokens and the per-token loss inputs."""

    tokens: np.ndarray  # int32 1-D model input (text chunks concatenated)
    loss_fn_inputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ForwardResult:
    """Per-datum outputs ("logprobs", "elementwise_loss") and metrics keyed "name:reduction"."""

    outputs: list[dict[str, np.ndarray]]
    metrics: dict[str, float]


@dataclass
class SampledSequence:
    """One completion: its tokens, their log-probabilities and why it ended."""

    tokens: list[int]
    logprobs: list[float]
    stop_reason: Literal["stop", "length"]


@dataclass
class SampleResult:
    """Completions of one prompt, plus the prompt's own log-probabilities when asked for."""

    sequences: list[SampledSequence]
    prompt_logprobs: list[float | None] | None


@dataclass(frozen=True)
class BaseModelInfo:
    """What the service tells clients about a base model."""

    name: str
    kind: Literal["stand-in", "local-path", "test"]
    max_context_length: int
    tokenizer_dir: Path | None
    description: str
