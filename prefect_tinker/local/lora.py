"""LoRA adapters on a shared base: PEFT config from a `LoraSpec`, seeded init, PEFT dirs.

Initialisation does not use torch's global RNG: every ``lora_A`` is drawn from numpy's PCG64
seeded with (spec seed, crc32 of the parameter's PEFT name), uniform in +-1/sqrt(fan_in) like
PEFT's default Kaiming init, and every ``lora_B`` is zero, so the adapter starts as a no-op and
the same seed gives the same bytes on every machine.

Example:
    >>> config = lora_config(base, LoraSpec(rank=8, seed=0))
    >>> base.add_adapter("run-1", config); init_adapter(base, "run-1", seed=0)
    >>> write_peft_dir(base, "run-1", config, Path("out"))   # adapter_config.json + safetensors
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig
from safetensors.torch import load_file, save_file

from prefect_tinker.local.basemodels import SharedBase
from prefect_tinker.local.engine_types import LORA_ALPHA, EngineError, LoraSpec

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def lora_config(base: SharedBase, spec: LoraSpec) -> Any:
    """The PEFT `LoraConfig` training what `spec` asks for on `base`."""
    if spec.rank < 1:
        raise EngineError(f"LoRA rank {spec.rank} is invalid; use a positive integer such as 32.")
    modules: list[str] = []
    parameters: list[str] = []
    if spec.train_attn:
        modules += base.target_modules["attn"]
    if spec.train_mlp:
        modules += base.target_modules["mlp"]
        parameters += base.target_parameters
    if spec.train_unembed:
        modules += base.target_modules["unembed"]
    if not modules and not parameters:
        raise EngineError(
            f"The LoRA spec {spec} trains no layer of {base.info.name!r}; enable at least one of "
            "train_attn, train_mlp, train_unembed."
        )
    return LoraConfig(
        r=spec.rank,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        bias="none",
        target_modules=sorted(modules) or None,
        target_parameters=sorted(parameters) or None,
        task_type="CAUSAL_LM",
        base_model_name_or_path=base.info.name,
    )


def init_adapter(base: SharedBase, adapter_name: str, *, seed: int) -> None:
    """Give adapter `adapter_name` its deterministic initial values for `seed`."""
    with torch.no_grad():
        for name, param in base.adapter_parameters(adapter_name).items():
            if ".lora_A." in name or name.endswith(".lora_A.weight"):
                bound = 1.0 / np.sqrt(param.shape[-1])
                rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                values = rng.uniform(-bound, bound, size=tuple(param.shape)).astype(np.float32)
                param.copy_(torch.from_numpy(values))
            else:
                param.zero_()


def adapter_tensors(base: SharedBase, adapter_name: str) -> dict[str, torch.Tensor]:
    """Copies of the adapter's weights keyed by PEFT's saved names."""
    return {
        name: param.detach().clone().contiguous()
        for name, param in base.adapter_parameters(adapter_name).items()
    }


def load_adapter_tensors(
    base: SharedBase, adapter_name: str, tensors: dict[str, torch.Tensor], source: Path
) -> None:
    """Copy saved `tensors` into adapter `adapter_name`; the key sets and shapes must match."""
    params = base.adapter_parameters(adapter_name)
    if set(params) != set(tensors):
        missing = sorted(set(params) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(params))[:3]
        raise EngineError(
            f"Adapter weights in {str(source)!r} do not fit {base.info.name!r}: "
            f"missing {missing}, unexpected {extra}."
        )
    with torch.no_grad():
        for name, param in params.items():
            if tuple(tensors[name].shape) != tuple(param.shape):
                raise EngineError(
                    f"Adapter weight {name} in {str(source)!r} has shape "
                    f"{tuple(tensors[name].shape)}, expected {tuple(param.shape)}."
                )
            param.copy_(tensors[name])


def config_json(config: Any, base_model: str) -> str:
    """`adapter_config.json` text: sorted keys and lists, no timestamps, stable bytes."""
    data = {**config.to_dict(), "base_model_name_or_path": base_model}
    for key, value in list(data.items()):
        if isinstance(value, set | frozenset):
            data[key] = sorted(value)
    return json.dumps(data, sort_keys=True, indent=2, default=str) + "\n"


def write_peft_dir(base: SharedBase, adapter_name: str, config: Any, dest: Path) -> None:
    """Write a standard PEFT adapter dir that `peft.PeftModel.from_pretrained` loads."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _atomic_safetensors(adapter_tensors(base, adapter_name), dest / ADAPTER_WEIGHTS)
    _atomic_text(config_json(config, base.info.name), dest / ADAPTER_CONFIG)


def read_peft_dir(source: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    """The `LoraConfig` and weights of a PEFT adapter dir."""
    source = Path(source)
    if not (source / ADAPTER_CONFIG).is_file() or not (source / ADAPTER_WEIGHTS).is_file():
        raise EngineError(
            f"{str(source)!r} is not a PEFT adapter dir (needs {ADAPTER_CONFIG} and "
            f"{ADAPTER_WEIGHTS}); write one with save_adapter / save_weights_for_sampler."
        )
    return LoraConfig.from_pretrained(str(source)), load_file(str(source / ADAPTER_WEIGHTS))


def _atomic_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(dict(sorted(tensors.items())), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
