"""The local training engine: LoRA runs on shared base models, AdamW, Tinker losses, samplers.

All compute is called from one service worker thread, so nothing here locks. Results are
deterministic: torch runs with a fixed thread count, adapters start from seeded numpy values,
and files are written with sorted keys and no timestamps, so the same seed and requests give
bit-identical adapter and state files.

Example:
    >>> engine = Engine(Path("/tmp/engine"))
    >>> run = engine.create("Qwen/Qwen3-8B", LoraSpec(rank=8, seed=0))
    >>> result = run.forward_backward([datum], "cross_entropy", {})
    >>> run.optim_step(AdamParams(learning_rate=1e-4))
    {'learning_rate:mean': 0.0001, 'grad_norm:mean': ...}
    >>> run.save_adapter(Path("/tmp/adapter"))      # a standard PEFT dir
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import secrets
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from safetensors.torch import load_file, save_file

from prefect_tinker.local import losses
from prefect_tinker.local.basemodels import BaseModels, SharedBase
from prefect_tinker.local.engine_types import (
    LORA_ALPHA,
    AdamParams,
    BaseModelInfo,
    DatumArrays,
    EngineError,
    ForwardResult,
    LoraSpec,
    SampledSequence,
    SampleResult,
)
from prefect_tinker.local.lora import (
    init_adapter,
    load_adapter_tensors,
    lora_config,
    read_peft_dir,
    write_peft_dir,
)
from prefect_tinker.local.sampling import Sampler

__all__ = [
    "AdamParams",
    "BaseModelInfo",
    "DatumArrays",
    "Engine",
    "EngineError",
    "ForwardResult",
    "LoraSpec",
    "SampleResult",
    "SampledSequence",
    "Sampler",
    "TrainableModel",
]

STATE_FORMAT = "prefect-tinker-engine-state/1"
STATE_JSON = "state.json"
STATE_WEIGHTS = "state.safetensors"
# Padded tokens per forward pass: bounds the (tokens x vocab) logits a step materialises.
MICROBATCH_TOKENS = 512
MAX_CACHED_SAMPLERS = 16
_ids = itertools.count()


def torch_threads() -> int:
    """Intra-op threads the engine runs torch with (env PREFECT_TINKER_TORCH_THREADS, default 1).

    One thread by default: results then do not depend on the machine's core count, and on a
    shared 2-core machine one thread ran a training step ~2x and a sampled token ~10x faster
    than two contending threads.
    """
    return int(os.environ.get("PREFECT_TINKER_TORCH_THREADS", "1"))


def _configure_torch() -> None:
    if torch.get_num_threads() != torch_threads():
        torch.set_num_threads(torch_threads())


class Engine:
    """Creates and loads LoRA training runs and samplers over cached base models."""

    def __init__(self, cache_dir: Path) -> None:
        _configure_torch()
        self.cache_dir = Path(cache_dir)
        self.models = BaseModels(self.cache_dir)
        self._samplers: OrderedDict[tuple[str, str, int, int], Sampler] = OrderedDict()

    def base_models(self) -> list[BaseModelInfo]:
        """Every base model the engine offers by name (local paths are accepted too)."""
        return self.models.infos()

    def base_model_info(self, name: str) -> BaseModelInfo:
        """Describe `name`; EngineError if unknown. `name` may be an absolute model-dir path."""
        return self.models.info(name)

    def create(self, base_model: str, lora: LoraSpec) -> TrainableModel:
        """A new training run; `lora.seed` None picks a seed (recorded in the run's spec)."""
        if lora.seed is None:
            lora = LoraSpec(**{**asdict(lora), "seed": secrets.randbits(31)})
        base = self.models.get(base_model)
        return TrainableModel(base, lora)

    def load(self, state_dir: Path, *, with_optimizer: bool) -> TrainableModel:
        """Restore a run saved by `save_state`; without optimizer, AdamW starts afresh."""
        state_dir = Path(state_dir)
        meta = _read_state_json(state_dir)
        base = self.models.get(meta["base_model"])
        run = TrainableModel(base, LoraSpec(**meta["lora"]))
        try:
            tensors = load_file(str(state_dir / STATE_WEIGHTS))
            weights = {
                k.removeprefix("weights/"): v
                for k, v in tensors.items()
                if k.startswith("weights/")
            }
            load_adapter_tensors(base, run.adapter_name, weights, state_dir)
        except (OSError, safetensors.SafetensorError) as exc:
            run.close()
            raise EngineError(
                f"Cannot read the weights of state {str(state_dir)!r} ({exc}); "
                "it was not fully written by save_state."
            ) from exc
        except EngineError:
            run.close()
            raise
        run.step = int(meta["step"])
        if with_optimizer:
            run._load_optimizer(tensors)
        return run

    def sampler(self, base_model: str, adapter_dir: Path | None) -> Sampler:
        """A (cached) sampler of `base_model`, with the PEFT adapter in `adapter_dir` if given."""
        base = self.models.get(base_model)
        if adapter_dir is None:
            return Sampler(base, None)
        adapter_dir = Path(adapter_dir).resolve()
        weights = adapter_dir / "adapter_model.safetensors"
        stat = weights.stat() if weights.is_file() else None
        key = (
            base.info.name,
            str(adapter_dir),
            stat.st_size if stat else -1,
            stat.st_mtime_ns if stat else -1,
        )
        if key in self._samplers:
            self._samplers.move_to_end(key)
            return self._samplers[key]
        config, tensors = read_peft_dir(adapter_dir)
        name = f"tk_sampler_{next(_ids)}"
        base.add_adapter(name, config)
        try:
            load_adapter_tensors(base, name, tensors, adapter_dir)
        except EngineError:
            base.delete_adapter(name)
            raise
        sampler = Sampler(base, name, release=lambda: base.delete_adapter(name))
        self._samplers[key] = sampler
        while len(self._samplers) > MAX_CACHED_SAMPLERS:
            _, evicted = self._samplers.popitem(last=False)
            evicted.close()
        return sampler


class TrainableModel:
    """One LoRA training run: an adapter on a shared base model plus its AdamW state."""

    def __init__(self, base: SharedBase, lora: LoraSpec) -> None:
        assert lora.seed is not None
        self.base = base
        self.base_model = base.info.name
        self.lora = lora
        self.step = 0
        self.adapter_name = f"tk_run_{next(_ids)}"
        self._config = lora_config(base, lora)
        # PEFT rewrites the config it injects (patterns for fused experts); keep ours pristine
        # so adapter_config.json does not depend on what else shares the base.
        base.add_adapter(self.adapter_name, copy.deepcopy(self._config))
        init_adapter(base, self.adapter_name, seed=lora.seed)
        self._params = base.adapter_parameters(self.adapter_name)
        self._optimizer = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.AdamW:
        return torch.optim.AdamW(list(self._params.values()), lr=0.0, foreach=False, fused=False)

    # ---- training --------------------------------------------------------------------------

    def forward_backward(
        self,
        data: list[DatumArrays],
        loss_fn: str,
        loss_fn_config: dict[str, float | str] | None = None,
        *,
        forward_only: bool = False,
    ) -> ForwardResult:
        """Loss, per-token logprobs and (unless forward_only) gradients, added to any pending."""
        config = losses.check_request(loss_fn, loss_fn_config)
        for index, datum in enumerate(data):
            tokens = np.asarray(datum.tokens)
            if tokens.ndim != 1 or tokens.size == 0:
                raise EngineError(
                    f"Datum {index} model input has shape {list(tokens.shape)}; give a non-empty "
                    "1-D list of token ids."
                )
            losses.check_inputs(loss_fn, datum.loss_fn_inputs, len(tokens), index)
            self.base.check_tokens(tokens, f"Datum {index} model input")
            self.base.check_tokens(datum.loss_fn_inputs["target_tokens"], f"Datum {index} targets")
        outputs: list[dict[str, np.ndarray]] = []
        total = 0.0
        with self.base.active(self.adapter_name) as model, torch.set_grad_enabled(not forward_only):
            for chunk in _microbatches(data):
                chunk_out, chunk_loss = self._run_chunk(model, chunk, loss_fn, config)
                if not forward_only and chunk_loss.requires_grad:
                    chunk_loss.backward()
                outputs += chunk_out
                total += float(chunk_loss.detach())
        return ForwardResult(outputs=outputs, metrics={"loss:sum": total})

    def _run_chunk(
        self,
        model: torch.nn.Module,
        chunk: list[DatumArrays],
        loss_fn: str,
        config: dict[str, float],
    ) -> tuple[list[dict[str, np.ndarray]], torch.Tensor]:
        lengths = [len(d.tokens) for d in chunk]
        width = max(lengths)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        targets = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, datum in enumerate(chunk):
            ids[row, : lengths[row]] = torch.from_numpy(np.asarray(datum.tokens, dtype=np.int64))
            targets[row, : lengths[row]] = torch.from_numpy(
                np.asarray(datum.loss_fn_inputs["target_tokens"], dtype=np.int64)
            )
        # Right padding needs no attention mask: causal attention never looks ahead at pads.
        logits = model(input_ids=ids, use_cache=False).logits.float()
        token_logprobs = -torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).reshape(len(chunk), width)
        outputs = []
        chunk_loss = torch.zeros(())
        for row, datum in enumerate(chunk):
            logprobs = token_logprobs[row, : lengths[row]]
            inputs = {
                k: torch.from_numpy(np.asarray(v, dtype=np.float32))
                for k, v in datum.loss_fn_inputs.items()
                if k != "target_tokens"
            }
            elementwise = losses.elementwise_loss(loss_fn, logprobs, inputs, config)
            chunk_loss = chunk_loss + elementwise.sum()
            outputs.append(
                {
                    "logprobs": logprobs.detach().numpy().astype(np.float32),
                    "elementwise_loss": elementwise.detach().numpy().astype(np.float32),
                }
            )
        return outputs, chunk_loss

    def optim_step(self, adam: AdamParams) -> dict[str, float]:
        """One AdamW step with `adam`'s parameters on the accumulated gradients, then zero them."""
        if adam.learning_rate < 0 or adam.eps < 0 or adam.weight_decay < 0:
            raise EngineError(f"AdamParams {adam} has a negative value; use values >= 0.")
        if not (0 <= adam.beta1 < 1 and 0 <= adam.beta2 < 1):
            raise EngineError(f"AdamParams betas ({adam.beta1}, {adam.beta2}) must be in [0, 1).")
        params = [p for p in self._params.values() if p.grad is not None]
        max_norm = adam.grad_clip_norm if adam.grad_clip_norm > 0 else float("inf")
        grad_norm = (
            float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False))
            if params
            else 0.0
        )
        for group in self._optimizer.param_groups:
            group.update(
                lr=adam.learning_rate,
                betas=(adam.beta1, adam.beta2),
                eps=adam.eps,
                weight_decay=adam.weight_decay,
            )
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"learning_rate:mean": adam.learning_rate, "grad_norm:mean": grad_norm}

    # ---- persistence -----------------------------------------------------------------------

    def save_state(self, dest: Path) -> None:
        """Write weights, AdamW state, step and spec to `dest` (same state => same bytes)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for name, param in self._params.items():
            tensors[f"weights/{name}"] = param.detach().clone().contiguous()
            state = self._optimizer.state.get(param)
            if state:
                tensors[f"adam/exp_avg/{name}"] = state["exp_avg"].clone().contiguous()
                tensors[f"adam/exp_avg_sq/{name}"] = state["exp_avg_sq"].clone().contiguous()
                tensors[f"adam/step/{name}"] = state["step"].detach().reshape(1).clone()
        tmp = dest / f".{STATE_WEIGHTS}.tmp"
        save_file(dict(sorted(tensors.items())), str(tmp), metadata={"format": STATE_FORMAT})
        os.replace(tmp, dest / STATE_WEIGHTS)
        meta = {
            "format": STATE_FORMAT,
            "base_model": self.base_model,
            "lora": asdict(self.lora),
            "lora_alpha": LORA_ALPHA,
            "step": self.step,
        }
        (dest / STATE_JSON).write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n")

    def _load_optimizer(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, param in self._params.items():
            if f"adam/step/{name}" not in tensors:
                continue
            self._optimizer.state[param] = {
                "step": tensors[f"adam/step/{name}"].reshape(()).clone(),
                "exp_avg": tensors[f"adam/exp_avg/{name}"].clone(),
                "exp_avg_sq": tensors[f"adam/exp_avg_sq/{name}"].clone(),
            }

    def save_adapter(self, dest: Path) -> None:
        """Write a standard PEFT adapter dir (adapter_config.json + adapter_model.safetensors)."""
        write_peft_dir(self.base, self.adapter_name, self._config, Path(dest))

    def close(self) -> None:
        """Free this run's adapter and optimizer state."""
        self._optimizer.state.clear()
        self._params = {}
        self.base.delete_adapter(self.adapter_name)


def _microbatches(data: list[DatumArrays]) -> list[list[DatumArrays]]:
    """Consecutive groups whose padded size stays within MICROBATCH_TOKENS (at least one each)."""
    chunks: list[list[DatumArrays]] = []
    current: list[DatumArrays] = []
    width = 0
    for datum in data:
        length = len(datum.tokens)
        if current and max(width, length) * (len(current) + 1) > MICROBATCH_TOKENS:
            chunks.append(current)
            current, width = [], 0
        current.append(datum)
        width = max(width, length)
    if current:
        chunks.append(current)
    return chunks


def _read_state_json(state_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((state_dir / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"{str(state_dir)!r} is not an engine state dir ({STATE_JSON} unreadable: {exc}); "
            "pass a directory written by save_state."
        ) from exc
    if meta.get("format") != STATE_FORMAT:
        raise EngineError(
            f"{str(state_dir)!r} has state format {meta.get('format')!r}; "
            f"expected {STATE_FORMAT!r}."
        )
    return meta
