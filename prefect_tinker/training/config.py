"""`TrainConfig`: every setting of a supervised LoRA run, validated, with a stable hash.

The hash covers only what changes the trained weights (model, LoRA, optimizer, schedule, data
order). Operational settings (checkpoint cadence, TTLs, pipeline depth) are left out, so a
resumed run may change them without breaking exact resume.
"""

from __future__ import annotations

import hashlib
import json
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefect_tinker.models.hyperparams import Schedule as LrSchedule
from prefect_tinker.paths import MAX_TTL_SECONDS, MIN_TTL_SECONDS

_RUN_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Fields that do not change the weights a run produces; excluded from `config_hash`.
_OPERATIONAL_FIELDS = frozenset(
    {"run_key", "checkpoint_every", "checkpoint_ttl_seconds", "final_ttl_seconds", "pipeline_depth"}
)


class LoraSettings(BaseModel):
    """LoRA adapter shape. A fixed `seed` (the default) makes runs reproducible bit for bit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(32, ge=1, le=1024, description="LoRA rank (adapter width).")
    seed: int | None = Field(0, description="Seed of the adapter's initial weights.")
    train_mlp: bool = Field(True, description="Adapt the MLP layers.")
    train_attn: bool = Field(True, description="Adapt the attention layers.")
    train_unembed: bool = Field(True, description="Adapt the unembedding layer.")

    @model_validator(mode="after")
    def _something_trains(self) -> LoraSettings:
        if not (self.train_mlp or self.train_attn or self.train_unembed):
            raise ValueError(
                "train_mlp, train_attn and train_unembed are all False, so LoRA would train "
                "nothing; set at least one of them to True."
            )
        return self


class TrainConfig(BaseModel):
    """Settings of one supervised fine-tuning run.

    Example:
        >>> cfg = TrainConfig(base_model="Qwen/Qwen3-0.6B", learning_rate=1e-4, batch_size=4)
        >>> cfg.lr_schedule, cfg.pipeline_depth
        ('linear', 2)
        >>> len(cfg.config_hash())
        16
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_key: str | None = Field(
        None,
        description="Name of the run for resume; derived from config + data when unset.",
    )
    base_model: str = Field(..., min_length=1, description="Base model to fine-tune.")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(..., gt=0.0, le=1.0, description="Peak learning rate.")
    lr_schedule: LrSchedule = Field("linear", description="constant, linear or cosine decay.")
    batch_size: int = Field(8, ge=1, description="Datums per optimizer step.")
    num_epochs: int = Field(1, ge=1, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Cap on optimizer steps.")
    checkpoint_every: int | None = Field(
        20, ge=1, description="Save a resumable checkpoint every N steps (None: only at the end)."
    )
    checkpoint_ttl_seconds: int | None = Field(
        7 * 24 * 3600, description="TTL of intermediate checkpoints (None: never expire)."
    )
    final_ttl_seconds: int | None = Field(
        None, description="TTL of the final checkpoint (None: never expires)."
    )
    pipeline_depth: int = Field(
        2, ge=1, le=64, description="Steps in flight before the oldest result is awaited."
    )
    seed: int = Field(0, description="Seed of the data order.")
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.95, ge=0.0, lt=1.0)
    eps: float = Field(1e-12, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip_norm: float = Field(0.0, ge=0.0, description="0 disables clipping.")

    @field_validator("run_key")
    @classmethod
    def _run_key_shape(cls, value: str | None) -> str | None:
        if value is not None and not _RUN_KEY.match(value):
            raise ValueError(
                f"run_key {value!r} is not allowed; use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        return value

    @field_validator("checkpoint_ttl_seconds", "final_ttl_seconds")
    @classmethod
    def _ttl_range(cls, value: int | None) -> int | None:
        if value is not None and not MIN_TTL_SECONDS <= value <= MAX_TTL_SECONDS:
            raise ValueError(
                f"TTL {value} s is outside what Tinker accepts; use None (never expire) or "
                f"{MIN_TTL_SECONDS}..{MAX_TTL_SECONDS} seconds (1 hour to 10 years)."
            )
        return value

    def config_hash(self) -> str:
        """16 hex digits identifying everything that changes the trained weights."""
        relevant = self.model_dump(mode="json", exclude=set(_OPERATIONAL_FIELDS))
        canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def resolved_run_key(self, data_fingerprint: str) -> str:
        """The user's `run_key`, or `sft-<hash of config + data fingerprint>`."""
        if self.run_key is not None:
            return self.run_key
        digest = hashlib.sha256(f"{self.config_hash()}:{data_fingerprint}".encode()).hexdigest()
        return f"sft-{digest[:16]}"
