"""Tinker's built-in loss functions, per token, summed (never averaged) over the batch.

With ``logp`` the model's log-probability of each target token, ``q`` the sampler's
(``loss_fn_inputs["logprobs"]``), ``A`` the advantages and ``r = exp(logp - q)``:

- ``cross_entropy``:       ``-weights * logp``
- ``importance_sampling``: ``-r * A``
- ``ppo``:                 ``-min(r * A, clip(r, low, high) * A)``  (low/high default 0.8/1.2)
- ``cispo``:               ``-stopgrad(clip(r, low, high)) * A * logp``  (default 0.0/4.0)
- ``dro``:                 ``-(logp * A - beta/2 * (logp - q)^2)``  (beta default 0.1)

Thresholds come from ``loss_fn_config`` keys ``clip_low_threshold`` / ``clip_high_threshold``
(and ``beta`` for dro), as in Tinker's docs.

Example:
    >>> elementwise = elementwise_loss("cross_entropy", logp, {"weights": w}, {})
    >>> loss = elementwise.sum()
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from prefect_tinker.local.engine_types import EngineError

REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens", "weights"),
    "importance_sampling": ("target_tokens", "logprobs", "advantages"),
    "ppo": ("target_tokens", "logprobs", "advantages"),
    "cispo": ("target_tokens", "logprobs", "advantages"),
    "dro": ("target_tokens", "logprobs", "advantages"),
}
CONFIG_KEYS: dict[str, dict[str, float]] = {
    "cross_entropy": {},
    "importance_sampling": {},
    "ppo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "cispo": {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
    "dro": {"beta": 0.1},
}
SUPPORTED = tuple(REQUIRED_INPUTS)


def check_request(
    loss_fn: str, loss_fn_config: Mapping[str, float | str] | None
) -> dict[str, float]:
    """The loss config with defaults filled in; EngineError for an unknown loss or key."""
    if loss_fn not in REQUIRED_INPUTS:
        raise EngineError(f"Unknown loss_fn {loss_fn!r}; supported: {', '.join(SUPPORTED)}.")
    defaults = CONFIG_KEYS[loss_fn]
    given = dict(loss_fn_config or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise EngineError(
            f"loss_fn_config keys {unknown} are not used by {loss_fn!r}; allowed: {allowed}."
        )
    config = dict(defaults)
    for key, value in given.items():
        try:
            config[key] = float(value)
        except (TypeError, ValueError):
            raise EngineError(f"loss_fn_config[{key!r}] = {value!r} is not a number.") from None
        if not math.isfinite(config[key]):
            raise EngineError(f"loss_fn_config[{key!r}] = {value!r} must be finite.")
    if "clip_low_threshold" in config and not (
        0 <= config["clip_low_threshold"] <= config["clip_high_threshold"]
    ):
        raise EngineError(
            f"Clip thresholds must satisfy 0 <= low <= high; got low="
            f"{config['clip_low_threshold']}, high={config['clip_high_threshold']}."
        )
    return config


def check_inputs(loss_fn: str, inputs: Mapping[str, np.ndarray], length: int, index: int) -> None:
    """EngineError unless datum `index` has every input `loss_fn` needs, each `length` long."""
    for key in REQUIRED_INPUTS[loss_fn]:
        if key not in inputs:
            raise EngineError(
                f"Datum {index} lacks loss_fn_inputs[{key!r}], which {loss_fn!r} needs "
                f"(it needs {', '.join(REQUIRED_INPUTS[loss_fn])})."
            )
    for key, value in inputs.items():
        shape = np.shape(value)
        if shape != (length,):
            raise EngineError(
                f"Datum {index}: loss_fn_inputs[{key!r}] has shape {list(shape)}; it must have "
                f"one entry per model-input token ({length})."
            )


def elementwise_loss(
    loss_fn: str,
    logprobs: torch.Tensor,
    inputs: Mapping[str, torch.Tensor],
    config: Mapping[str, float],
) -> torch.Tensor:
    """Per-token loss of one datum; its sum is the datum's contribution to the loss."""
    if loss_fn == "cross_entropy":
        return -inputs["weights"] * logprobs
    advantages = inputs["advantages"]
    log_ratio = logprobs - inputs["logprobs"]
    ratio = torch.exp(log_ratio)
    if loss_fn == "importance_sampling":
        return -ratio * advantages
    if loss_fn == "ppo":
        low, high = config["clip_low_threshold"], config["clip_high_threshold"]
        return -torch.minimum(ratio * advantages, ratio.clamp(low, high) * advantages)
    if loss_fn == "cispo":
        low, high = config["clip_low_threshold"], config["clip_high_threshold"]
        return -ratio.clamp(low, high).detach() * advantages * logprobs
    if loss_fn == "dro":
        return -(logprobs * advantages - 0.5 * config["beta"] * log_ratio.square())
    raise EngineError(f"Unknown loss_fn {loss_fn!r}; supported: {', '.join(SUPPORTED)}.")
