"""Inspect and validate a PEFT LoRA adapter directory without loading any tensor.

`inspect_adapter` reads `adapter_config.json` and the safetensors header by hand (an 8-byte
little-endian length, then that many bytes of JSON), so it is instant even for large adapters
and needs neither torch nor safetensors. `validate_adapter` checks that the config, the tensors
and (when known) the base model's architecture agree, and warns about what serving stacks such
as vLLM refuse.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_tinker.errors import AdapterValidationError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024
VLLM_DEFAULT_MAX_RANK = 16
VLLM_MAX_RANK = 512  # the largest --max-lora-rank choice vLLM offers
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)"
    r"(?:\.[A-Za-z0-9_-]+)?(?:\.weight)?$"
)
_PREFIX = "base_model.model."
_EMBEDDING_NAMES = ("embed_tokens", "wte", "word_embeddings", "embed_in")
_UNEMBED_NAMES = ("lm_head", "embed_out", "output")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the safetensors file, as its header describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class LoraModule:
    """A module that carries a LoRA pair: its name (without `base_model.model.`) and shapes."""

    name: str
    a_shape: tuple[int, ...] | None
    b_shape: tuple[int, ...] | None

    @property
    def in_features(self) -> int | None:
        return self.a_shape[-1] if self.a_shape else None

    @property
    def out_features(self) -> int | None:
        return self.b_shape[0] if self.b_shape else None


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter directory holds.

    Example:
        >>> info = inspect_adapter("./adapter")
        >>> info.rank, info.alpha, info.target_modules
        (32, 32.0, ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'])
    """

    directory: Path
    base_model: str | None
    rank: int | None
    alpha: float | None
    target_modules: list[str] | str
    target_parameters: list[str]
    modules_to_save: list[str]
    config: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    modules: tuple[LoraModule, ...]
    metadata: dict[str, str]
    weights_size: int

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(t.shape) for t in self.tensors)

    @property
    def dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors})

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "base_model": self.base_model,
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": self.target_modules,
            "target_parameters": self.target_parameters,
            "modules_to_save": self.modules_to_save,
            "parameter_count": self.parameter_count,
            "dtypes": self.dtypes,
            "weights_size": self.weights_size,
            "tensors": [
                {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in self.tensors
            ],
        }


@dataclass
class ValidationReport:
    """Problems (the adapter will not load) and warnings (some serving stacks refuse it)."""

    info: AdapterInfo | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor descriptions and `__metadata__` of a safetensors file, reading only its header.

    Raises:
        AdapterValidationError: the file is not a well-formed safetensors file.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise AdapterValidationError(f"{str(path)!r} is too short to be a safetensors file.")
        (length,) = struct.unpack("<Q", raw)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise AdapterValidationError(
                f"{str(path)!r} announces a {length}-byte header in a {size}-byte file; it is not "
                "a safetensors file or it is truncated. Download it again."
            )
        try:
            header = json.loads(fh.read(length))
        except ValueError as exc:
            raise AdapterValidationError(
                f"{str(path)!r} has a header that is not JSON ({exc}); download it again."
            ) from exc
    if not isinstance(header, dict):
        raise AdapterValidationError(f"{str(path)!r} has a header that is not a JSON object.")
    raw_metadata = header.pop("__metadata__", None) or {}
    if not isinstance(raw_metadata, dict):
        raise AdapterValidationError(
            f"{str(path)!r} has a __metadata__ entry that is not an object; download it again."
        )
    metadata = {str(k): str(v) for k, v in raw_metadata.items()}
    data_size = size - 8 - length
    tensors: dict[str, TensorInfo] = {}
    spans = []
    for name, desc in header.items():
        try:
            dtype, shape = str(desc["dtype"]), tuple(int(d) for d in desc["shape"])
            start, end = (int(x) for x in desc["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterValidationError(
                f"{str(path)!r}: tensor {name!r} has a malformed header entry ({exc!r})."
            ) from exc
        expected = math.prod(shape) * DTYPE_BYTES.get(dtype, 0)
        if dtype in DTYPE_BYTES and end - start != expected:
            raise AdapterValidationError(
                f"{str(path)!r}: tensor {name!r} ({dtype} {list(shape)}) spans {end - start} "
                f"bytes, expected {expected}."
            )
        if not 0 <= start <= end <= data_size:
            raise AdapterValidationError(
                f"{str(path)!r}: tensor {name!r} lies outside the file (offsets {start}-{end}, "
                f"{data_size} data bytes); the file is truncated. Download it again."
            )
        spans.append((start, end, name))
        tensors[name] = TensorInfo(name, dtype, shape, end - start)
    spans.sort()
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise AdapterValidationError(
                f"{str(path)!r}: tensors {name_a!r} and {name_b!r} overlap; the file is corrupt."
            )
    return tensors, metadata


def inspect_adapter(directory: Path | str) -> AdapterInfo:
    """Describe the adapter in `directory` without loading tensors.

    Raises:
        AdapterValidationError: a required file is missing or unreadable.

    Example:
        >>> inspect_adapter("./adapter").parameter_count
        1048576
    """
    directory = Path(directory)
    config_path, weights_path = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        hint = ""
        if (directory / "adapter_model.bin").is_file():
            hint = " (it has adapter_model.bin: re-save it with safe_serialization=True)"
        raise AdapterValidationError(
            f"{str(directory)!r} is not a PEFT LoRA adapter: missing {', '.join(missing)}{hint}."
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterValidationError(f"{str(config_path)!r} is not valid JSON ({exc}).") from exc
    if not isinstance(config, dict):
        raise AdapterValidationError(f"{str(config_path)!r} does not hold a JSON object.")
    tensors, metadata = read_safetensors_header(weights_path)
    targets = config.get("target_modules")
    return AdapterInfo(
        directory=directory,
        base_model=base if isinstance(base := config.get("base_model_name_or_path"), str) else None,
        rank=_int_or_none(config.get("r")),
        alpha=_float_or_none(config.get("lora_alpha")),
        target_modules=targets if isinstance(targets, str) else _names(targets),
        target_parameters=_names(config.get("target_parameters")),
        modules_to_save=_names(config.get("modules_to_save")),
        config=config,
        tensors=tuple(tensors[n] for n in sorted(tensors)),
        modules=_lora_modules(tensors),
        metadata=metadata,
        weights_size=weights_path.stat().st_size,
    )


def validate_adapter(
    directory: Path | str,
    base: Path | str | dict[str, Any] | None = None,
    *,
    raise_on_error: bool = True,
) -> ValidationReport:
    """Check that the adapter in `directory` will load, and warn about serving-stack limits.

    Args:
        directory: the adapter directory.
        base: the base model's architecture to check shapes against: a local Hugging Face
            model directory (its `config.json`), a `config.json` dict, or a model name. With
            None, the adapter's `base_model_name_or_path` is used when it is a local directory.
        raise_on_error: raise `AdapterValidationError` listing every problem (the default), or
            return the report with them.

    Example:
        >>> report = validate_adapter("./adapter", base="./Qwen3-0.6B")
        >>> report.warnings
        ['vLLM does not serve LoRA on lm_head ...']
    """
    try:
        info = inspect_adapter(directory)
    except AdapterValidationError as exc:
        report = ValidationReport(None, errors=[str(exc)])
    else:
        report = ValidationReport(info)
        _check_config(info, report)
        _check_tensors(info, report)
        arch = _base_architecture(base, info, report)
        if arch:
            _check_against_base(info, arch, report)
        _serving_warnings(info, report)
    if raise_on_error and report.errors:
        raise AdapterValidationError(
            f"adapter {str(directory)!r} is not loadable: " + "; ".join(report.errors)
        )
    return report


def _names(value: Any) -> list[str]:
    """A config field that should list module names, as sorted strings ([] for anything else)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return sorted(str(v) for v in value)
    return []


def _rank_pattern(config: dict[str, Any]) -> dict[str, int]:
    pattern = config.get("rank_pattern")
    if not isinstance(pattern, dict):
        return {}
    return {str(k): v for k, v in pattern.items() if _int_or_none(v) is not None}


def _search(pattern: str, text: str, *, full: bool = False) -> bool:
    """Regex match that treats an invalid pattern (from a config file) as no match."""
    try:
        return bool(re.fullmatch(pattern, text) if full else re.search(pattern, text))
    except re.error:
        return False


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _lora_modules(tensors: dict[str, TensorInfo]) -> tuple[LoraModule, ...]:
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, t in tensors.items():
        match = _LORA_KEY.match(name)
        if match:
            module = match["module"].removeprefix(_PREFIX)
            side = "A" if match["kind"].endswith("A") else "B"
            pairs.setdefault(module, {})[side] = t.shape
    return tuple(
        LoraModule(name, sides.get("A"), sides.get("B")) for name, sides in sorted(pairs.items())
    )


def _check_config(info: AdapterInfo, report: ValidationReport) -> None:
    cfg = info.config
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        report.errors.append(f"peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    if info.rank is None or info.rank < 1:
        report.errors.append(f"r is {cfg.get('r')!r}; it must be a positive integer")
    if info.alpha is None or info.alpha <= 0:
        report.errors.append(f"lora_alpha is {cfg.get('lora_alpha')!r}; it must be positive")
    if not info.target_modules and not info.target_parameters:
        report.errors.append("adapter_config.json names no target_modules or target_parameters")
    for key in ("target_modules", "target_parameters", "modules_to_save"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, str | list):
            report.errors.append(f"{key} is {value!r}; it must be a list of module names")
    if cfg.get("rank_pattern") is not None and not isinstance(cfg.get("rank_pattern"), dict):
        report.errors.append(f"rank_pattern is {cfg.get('rank_pattern')!r}; it must be an object")
    if not info.base_model:
        report.warnings.append(
            "adapter_config.json has no base_model_name_or_path; loaders cannot tell which base "
            "model the adapter belongs to"
        )


def _targets(info: AdapterInfo, module: str) -> str | None:
    """'module' or 'parameter' when the config targets `module`, else None."""
    stripped = "." + module.replace(".base_layer", "")
    for param in info.target_parameters:
        parent = param.rsplit(".", 1)[0]
        if stripped.endswith("." + param) or stripped.endswith("." + parent):
            return "parameter"
    targets = info.target_modules
    if isinstance(targets, str):
        if targets == "all-linear" or _search(targets, module, full=True):
            return "module"
        return None
    last = module.rsplit(".", 1)[-1]
    if any(last == t or module == t or module.endswith("." + t) for t in targets):
        return "module"
    return None


def _check_tensors(info: AdapterInfo, report: ValidationReport) -> None:
    if not info.modules:
        report.errors.append(f"{ADAPTER_WEIGHTS} holds no lora_A/lora_B tensors")
        return
    r = info.rank
    rank_pattern = _rank_pattern(info.config)
    for m in info.modules:
        if m.a_shape is None or m.b_shape is None:
            side = "lora_B" if m.a_shape else "lora_A"
            report.errors.append(f"{m.name} has no {side} tensor")
            continue
        if len(m.a_shape) != 2 or len(m.b_shape) != 2:
            report.errors.append(f"{m.name}: LoRA tensors must be 2-D, got {m.a_shape}/{m.b_shape}")
            continue
        kind = _targets(info, m.name)
        if kind is None:
            report.errors.append(f"{m.name} carries LoRA weights but is not in target_modules")
        rank = next((v for k, v in rank_pattern.items() if _search(k, m.name)), r)
        a_rank, b_rank = m.a_shape[0], m.b_shape[1]
        if a_rank != b_rank:
            report.errors.append(
                f"{m.name}: lora_A {list(m.a_shape)} and lora_B {list(m.b_shape)} disagree on "
                "the rank"
            )
        elif rank and kind == "parameter":
            if a_rank % rank:
                report.errors.append(f"{m.name}: rank {a_rank} is not a multiple of r={rank}")
        elif rank and a_rank != rank:
            report.errors.append(
                f"{m.name}: lora_A {list(m.a_shape)} / lora_B {list(m.b_shape)} have rank "
                f"{a_rank}, but adapter_config.json says r={rank}"
            )
    dtypes = info.dtypes
    if len(dtypes) > 1:
        report.warnings.append(f"tensors mix dtypes {dtypes}; most loaders expect one")


def _base_architecture(
    base: Path | str | dict[str, Any] | None, info: AdapterInfo, report: ValidationReport
) -> dict[str, Any] | None:
    """The base `config.json` to check against: `base` (a dict, a local model dir or config
    file, or a registry model name), else the adapter's base model when it is a local dir.

    The registry is consulted only for an explicit `base`: adapters trained on the local
    service's small stand-ins carry real model names but not the real shapes.
    """
    if isinstance(base, dict):
        return base
    candidate = base if base is not None else info.base_model
    if not candidate:
        return None
    try:
        path = Path(str(candidate)).expanduser()
        config = path / "config.json" if path.is_dir() else path
        is_file = config.name.endswith(".json") and config.is_file()
    except (OSError, ValueError):  # a name too long or odd to be a path is a model name
        is_file = False
    if is_file:
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            report.warnings.append(f"could not read the base config {str(config)!r}")
            return None
        return data if isinstance(data, dict) else None
    if base is None:
        return None
    arch = _registry_architecture(str(base))
    if arch is None:
        report.warnings.append(
            f"base {str(base)!r} is neither a local model directory nor a known model; "
            "shapes were checked against the rank only"
        )
    return arch


def _registry_architecture(name: str) -> dict[str, Any] | None:
    """The `config.json` shapes the models registry records for `name`, if it knows it."""
    try:
        from prefect_tinker.models import get_model

        return dict(get_model(name).architecture.to_hf_config())
    except Exception:  # noqa: BLE001 - an unknown name only means: no architecture to check
        return None


def _text_config(arch: dict[str, Any]) -> dict[str, Any]:
    """The decoder's part of a config.json (multimodal configs nest it as text_config)."""
    nested = arch.get("text_config")
    return nested if isinstance(nested, dict) else arch


def _positive(value: Any) -> int | None:
    number = _int_or_none(value)
    return number if number is not None and number > 0 else None


def _expected_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of the usual linear layers, from an HF `config.json`."""
    cfg = _text_config(arch)
    h = _positive(cfg.get("hidden_size"))
    if h is None:
        return {}
    heads = _positive(cfg.get("num_attention_heads")) or 1
    kv = _positive(cfg.get("num_key_value_heads")) or heads
    head_dim = _positive(cfg.get("head_dim")) or h // heads
    inter = _positive(cfg.get("intermediate_size"))
    vocab = _positive(cfg.get("vocab_size"))
    shapes = {
        "q_proj": (h, heads * head_dim),
        "k_proj": (h, kv * head_dim),
        "v_proj": (h, kv * head_dim),
        "o_proj": (heads * head_dim, h),
    }
    if isinstance(inter, int) and not (cfg.get("num_experts") or cfg.get("num_local_experts")):
        shapes |= {"gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    if isinstance(vocab, int):  # lora_embedding_A is [r, vocab], lora_embedding_B [h, r]
        shapes |= {"lm_head": (h, vocab), "embed_tokens": (vocab, h)}
    return shapes


def _check_against_base(info: AdapterInfo, arch: dict[str, Any], report: ValidationReport) -> None:
    expected = _expected_shapes(arch)
    layers = _positive(_text_config(arch).get("num_hidden_layers"))
    for m in info.modules:
        if m.a_shape is None or m.b_shape is None:
            continue
        index = re.search(r"\.layers\.(\d+)\.", "." + m.name + ".")
        if index and isinstance(layers, int) and int(index[1]) >= layers:
            report.errors.append(
                f"{m.name}: layer {index[1]} does not exist; the base model has {layers} layers"
            )
        last = m.name.rsplit(".", 1)[-1]
        if last not in expected:
            continue
        want_in, want_out = expected[last]
        if (m.in_features, m.out_features) != (want_in, want_out):
            report.errors.append(
                f"{m.name}: LoRA maps {m.in_features} -> {m.out_features} features, but the "
                f"base model's {last} maps {want_in} -> {want_out}; the adapter belongs to "
                "another base model"
            )


def _serving_warnings(info: AdapterInfo, report: ValidationReport) -> None:
    cfg = info.config
    names = {m.name.rsplit(".", 1)[-1] for m in info.modules}
    if isinstance(info.target_modules, list):
        names |= set(info.target_modules)
    unembed = sorted(names & set(_UNEMBED_NAMES))
    embed = sorted(names & set(_EMBEDDING_NAMES))
    if unembed or embed:
        report.warnings.append(
            f"vLLM does not serve LoRA on {', '.join(unembed + embed)} (output/embedding "
            "layers); serve it with PEFT/transformers, or merge it into the base model"
        )
    if info.modules_to_save:
        report.warnings.append(
            f"modules_to_save={info.modules_to_save}: vLLM only supports modules_to_save None"
        )
    if cfg.get("use_dora"):
        report.warnings.append("DoRA adapters (use_dora=true) are not supported by vLLM")
    if cfg.get("bias", "none") != "none":
        report.warnings.append(f"bias={cfg.get('bias')!r}: vLLM does not support adapter bias")
    if info.target_parameters:
        report.warnings.append(
            f"target_parameters={info.target_parameters} (LoRA on fused expert weights) needs a "
            "recent PEFT; many serving stacks cannot load it"
        )
    rank = max([info.rank or 0, *_rank_pattern(cfg).values()])
    if rank > VLLM_MAX_RANK:
        report.warnings.append(
            f"rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_MAX_RANK})"
        )
    elif rank > VLLM_DEFAULT_MAX_RANK:
        report.warnings.append(
            f"rank {rank} is above vLLM's default max_lora_rank {VLLM_DEFAULT_MAX_RANK}; "
            f"start vLLM with --max-lora-rank {_next_vllm_rank(rank)}"
        )


def _next_vllm_rank(rank: int) -> int:
    return next(c for c in (8, 16, 32, 64, 128, 256, 320, 512) if c >= rank)


__all__ = [
    "AdapterInfo",
    "LoraModule",
    "TensorInfo",
    "ValidationReport",
    "inspect_adapter",
    "read_safetensors_header",
    "validate_adapter",
]
