"""Sampling from a base model (optionally with a LoRA adapter) with a KV cache.

Each of the `num_samples` completions is decoded token by token from one shared prompt pass.
Temperature 0 is greedy; otherwise logits are divided by the temperature, filtered by top_k
(-1 = off) and top_p, and sampled with a `torch.Generator` seeded from `seed`, so a seed
reproduces its samples exactly. A returned logprob is the token's log-probability under the
temperature-scaled distribution (the one it was sampled from, before top-k/top-p truncation;
for greedy decoding, the plain distribution). A stop token (or the last token of a stop string)
is included in the returned tokens.

Example:
    >>> result = sampler.sample([1, 2, 3], 2, max_tokens=8, temperature=0.7, seed=1)
    >>> result.sequences[0].stop_reason
    'length'
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable
from typing import Any

import torch

from prefect_tinker.local.basemodels import SharedBase
from prefect_tinker.local.engine_types import EngineError, SampledSequence, SampleResult


class Sampler:
    """Samples from base `base` with adapter `adapter_name` (None = the bare base model)."""

    def __init__(
        self, base: SharedBase, adapter_name: str | None, release: Callable[[], None] | None = None
    ) -> None:
        self.base = base
        self.adapter_name = adapter_name
        self._release = release

    def close(self) -> None:
        """Detach this sampler's adapter from the shared base."""
        if self._release is not None:
            self._release()
            self._release = None

    def sample(
        self,
        prompt: list[int],
        num_samples: int,
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        stop: list[int] | list[str] | str | None = None,
        seed: int | None = None,
        prompt_logprobs: bool = False,
    ) -> SampleResult:
        """`num_samples` completions of `prompt`, each at most `max_tokens` long."""
        prompt = [int(t) for t in prompt]
        self._check(prompt, num_samples, max_tokens, temperature, top_p, top_k)
        stop_ids, stop_strings = self._stops(stop)
        generator = torch.Generator().manual_seed(
            seed if seed is not None else secrets.randbits(63)
        )
        with torch.no_grad(), self.base.active(self.adapter_name) as model:
            ids = torch.tensor([prompt], dtype=torch.long)
            all_logits, cache = _forward(model, ids, None, last_only=not prompt_logprobs)
            prompt_lps = _prompt_logprobs(all_logits[0], prompt) if prompt_logprobs else None
            if num_samples > 1:
                cache.batch_repeat_interleave(num_samples)
            logits = all_logits[:, -1, :].float().expand(num_samples, -1)
            tokens: list[list[int]] = [[] for _ in range(num_samples)]
            logprobs: list[list[float]] = [[] for _ in range(num_samples)]
            reasons: list[str | None] = [None] * num_samples
            for step in range(max_tokens):
                chosen, chosen_lp = _choose(logits, temperature, top_p, top_k, generator)
                for i in range(num_samples):
                    if reasons[i] is not None:
                        continue
                    token = int(chosen[i])
                    tokens[i].append(token)
                    logprobs[i].append(float(chosen_lp[i]))
                    if token in stop_ids or self._hit_string(tokens[i], stop_strings):
                        reasons[i] = "stop"
                if all(r is not None for r in reasons) or step == max_tokens - 1:
                    break
                step_logits, cache = _forward(model, chosen[:, None], cache)
                logits = step_logits[:, -1, :].float()
        sequences = [
            SampledSequence(tokens=t, logprobs=lp, stop_reason="stop" if r else "length")
            for t, lp, r in zip(tokens, logprobs, reasons, strict=True)
        ]
        return SampleResult(sequences=sequences, prompt_logprobs=prompt_lps)

    def _check(
        self,
        prompt: list[int],
        num_samples: int,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
    ) -> None:
        if not prompt:
            raise EngineError("The prompt is empty; give at least one token.")
        if num_samples < 1:
            raise EngineError(f"num_samples={num_samples}; ask for at least 1 sample.")
        if max_tokens < 1:
            raise EngineError(f"max_tokens={max_tokens}; ask for at least 1 token.")
        if temperature < 0:
            raise EngineError(f"temperature={temperature} is negative; use 0 (greedy) or more.")
        if not 0 < top_p <= 1:
            raise EngineError(f"top_p={top_p} must be in (0, 1].")
        if top_k == 0 or top_k < -1:
            raise EngineError(f"top_k={top_k} must be positive, or -1 for no top-k filter.")
        self.base.check_tokens(prompt, "The prompt")
        total = len(prompt) + max_tokens
        if total > self.base.info.max_context_length:
            raise EngineError(
                f"Prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the context "
                f"length {self.base.info.max_context_length} of {self.base.info.name!r}."
            )

    def _stops(self, stop: list[int] | list[str] | str | None) -> tuple[set[int], list[str]]:
        if stop is None:
            return set(), []
        items = [stop] if isinstance(stop, str) else list(stop)
        ids = {int(s) for s in items if not isinstance(s, str)}
        strings = [s for s in items if isinstance(s, str) and s]
        if strings and self.base.decode is None:
            raise EngineError(
                f"Stop strings {strings} need a tokenizer, and {self.base.info.name!r} has none; "
                "pass stop token ids instead."
            )
        return ids, strings

    def _hit_string(self, tokens: list[int], strings: list[str]) -> bool:
        if not strings:
            return False
        text = self.base.decode(tokens)  # type: ignore[misc]
        return any(s in text for s in strings)


def _forward(
    model: Any, ids: torch.Tensor, cache: Any, *, last_only: bool = True
) -> tuple[torch.Tensor, Any]:
    """Logits of `ids` after `cache`, and the extended cache (transformers 4.x and 5.x names).

    With `last_only`, only the last position's logits are computed (a long prompt would
    otherwise materialise prompt-length x vocabulary floats).
    """
    params = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {"use_cache": True}
    if cache is not None:
        kwargs["cache" if "cache" in params else "past_key_values"] = cache
    if last_only and "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    out = model(input_ids=ids, **kwargs)
    new_cache = getattr(out, "cache", None)
    return out.logits, new_cache if new_cache is not None else out.past_key_values


def _choose(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row and its logprob (see the module docstring for which distribution)."""
    if temperature == 0:
        logprobs = torch.log_softmax(logits, dim=-1)
        chosen = logprobs.argmax(dim=-1)
        return chosen, logprobs.gather(-1, chosen[:, None])[:, 0]
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    if 0 < top_k < logprobs.shape[-1]:
        # Work on the k best candidates only (sorted): cheaper than masking the whole vocab.
        candidates, index = torch.topk(logprobs, top_k, dim=-1)
    elif top_p < 1:
        candidates, index = torch.sort(logprobs, dim=-1, descending=True)
    else:
        candidates, index = logprobs, None
    if top_p < 1:
        probs = torch.softmax(candidates, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the better candidates
        candidates = candidates.masked_fill(before >= top_p, float("-inf"))  # keeps the first
    picked = torch.multinomial(torch.softmax(candidates, dim=-1), 1, generator=gen)
    chosen = (picked if index is None else index.gather(-1, picked))[:, 0]
    return chosen, logprobs.gather(-1, chosen[:, None])[:, 0]


def _prompt_logprobs(logits: torch.Tensor, prompt: list[int]) -> list[float | None]:
    """log p(prompt[i] | prompt[:i]) for i >= 1, and None for the first token."""
    if len(prompt) == 1:
        return [None]
    logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
    targets = torch.tensor(prompt[1:], dtype=torch.long)[:, None]
    values = logprobs.gather(-1, targets)[:, 0].tolist()
    return [None, *values]
