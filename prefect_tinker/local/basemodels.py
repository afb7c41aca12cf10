"""Base models of the local engine: offline stand-ins for Tinker's lineup, and local HF dirs.

A *stand-in* is named like a real Tinker base model (``Qwen/Qwen3-8B``) and pairs the real
tokenizer (shipped by tml-renderers) with a tiny random model of the same architecture family
(Qwen3: hidden 64, 2 layers, 4 heads, 2 KV heads). Its weights come from a seed derived from the
name with numpy's PCG64 generator, so every machine builds the same bytes; they are cached under
``cache_dir/base_models/<safe name>/`` as a normal ``save_pretrained`` directory. A *local-path*
model is any Hugging Face model directory given by absolute path; its real weights are loaded.

`BaseModels` keeps exactly one in-memory copy of each base model (a `SharedBase`); every training
run and sampler of that base is a named PEFT adapter on that one copy, switched per call.

Example:
    >>> models = BaseModels(Path("/tmp/cache"))
    >>> models.info("Qwen/Qwen3-8B").kind
    'stand-in'
    >>> base = models.get("Qwen/Qwen3-8B")   # builds and caches the stand-in on first use
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM

from prefect_tinker.local.engine_types import BaseModelInfo, EngineError

logger = logging.getLogger(__name__)

# Bump when the stand-in recipe changes, so stale caches are rebuilt rather than reused.
STANDIN_RECIPE_VERSION = 1
INIT_STD = 0.02
ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
UNEMBED_MODULES = ("lm_head",)


@dataclass(frozen=True)
class Family:
    """An architecture family: its tokenizer, real vocabulary size and tiny config."""

    key: str
    tokenizer_class: str  # class in tml_renderers.tokenizers
    real_vocab_size: int  # vocab_size of the real models' config.json
    max_context_length: int
    make_config: Callable[[int, int], Any]  # (vocab_size, eos_token_id) -> transformers config
    mlp_modules: tuple[str, ...] = MLP_MODULES
    attn_modules: tuple[str, ...] = ATTN_MODULES
    mlp_parameters: tuple[str, ...] = ()  # fused expert weights, trained via PEFT target_parameters


# The tiny shape every stand-in shares (hidden 64, 2 layers, 4 heads, untied unembedding) ...
TINY_SHAPE: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "tie_word_embeddings": False,
}
# ... and the Qwen3 families' attention/MLP on top of it (also `write_tiny_qwen3`'s default).
QWEN3_TINY_SHAPE: dict[str, Any] = {
    **TINY_SHAPE,
    "intermediate_size": 128,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-6,
}


def _special_ids(eos: int) -> dict[str, Any]:
    return {"eos_token_id": eos, "pad_token_id": None, "bos_token_id": None}


def _qwen3_config(vocab_size: int, eos: int) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        **QWEN3_TINY_SHAPE,
        max_position_embeddings=40960,
        **_special_ids(eos),
    )


def _qwen3_moe_config(vocab_size: int, eos: int) -> Any:
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        vocab_size=vocab_size,
        **QWEN3_TINY_SHAPE,
        moe_intermediate_size=32,
        num_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=40960,
        **_special_ids(eos),
    )


def _gpt_oss_config(vocab_size: int, eos: int) -> Any:
    from transformers import GptOssConfig

    return GptOssConfig(
        vocab_size=vocab_size,
        **TINY_SHAPE,
        intermediate_size=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        num_key_value_heads=2,
        head_dim=16,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=128,
        max_position_embeddings=131072,
        **_special_ids(eos),
    )


def _deepseek_v3_config(vocab_size: int, eos: int) -> Any:
    from transformers import DeepseekV3Config

    # Multi-head latent attention and a dense first layer, then routed + shared experts.
    return DeepseekV3Config(
        vocab_size=vocab_size,
        **TINY_SHAPE,
        intermediate_size=128,
        moe_intermediate_size=32,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        first_k_dense_replace=1,
        num_key_value_heads=4,
        q_lora_rank=32,
        kv_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=16,
        max_position_embeddings=163840,
        rope_scaling=None,
        **_special_ids(eos),
    )


def write_tiny_qwen3(
    dest: Path, *, vocab_size: int, max_position_embeddings: int, seed: int = 0, **shape: Any
) -> Path:
    """Write a seeded random tiny Qwen3 to `dest` as a local Hugging Face model directory.

    The shape is the stand-ins' (`QWEN3_TINY_SHAPE`) unless `shape` overrides some of it; the
    weights are transformers' random init after ``torch.manual_seed(seed)``. For tests and
    benchmarks that need a real local-path model smaller than a stand-in.

    Example:
        >>> write_tiny_qwen3(tmp / "model", vocab_size=2048, max_position_embeddings=2048)
        PosixPath('/tmp/.../model')
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab_size,
        **{**QWEN3_TINY_SHAPE, "max_position_embeddings": max_position_embeddings, **shape},
    )
    Qwen3ForCausalLM(config).save_pretrained(dest)
    return Path(dest)


_EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
_MLA = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")

FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("qwen3", "Qwen3Tokenizer", 151936, 32768, _qwen3_config),
        Family(
            "qwen3_moe",
            "Qwen3Tokenizer",
            151936,
            32768,
            _qwen3_moe_config,
            mlp_modules=(),
            mlp_parameters=_EXPERTS,
        ),
        Family(
            "gpt_oss",
            "HarmonyTokenizer",
            201088,
            131072,
            _gpt_oss_config,
            mlp_modules=(),
            mlp_parameters=_EXPERTS,
        ),
        Family(
            "deepseek_v3",
            "DeepSeekV31Tokenizer",
            129280,
            131072,
            _deepseek_v3_config,
            attn_modules=_MLA,
            mlp_parameters=_EXPERTS,
        ),
        Family(
            "kimi_k2",
            "KimiK2ThinkingTokenizer",
            163840,
            131072,
            _deepseek_v3_config,  # Kimi K2 is a DeepSeek-V3-architecture model
            attn_modules=_MLA,
            mlp_parameters=_EXPERTS,
        ),
    )
}

# Tinker's lineup that tml-renderers has tokenizers for: model name -> family key.
STANDINS: dict[str, str] = {
    "Qwen/Qwen3-0.6B": "qwen3",
    "Qwen/Qwen3-1.7B": "qwen3",
    "Qwen/Qwen3-4B": "qwen3",
    "Qwen/Qwen3-4B-Instruct-2507": "qwen3",
    "Qwen/Qwen3-8B": "qwen3",
    "Qwen/Qwen3-8B-Base": "qwen3",
    "Qwen/Qwen3-14B": "qwen3",
    "Qwen/Qwen3-32B": "qwen3",
    "Qwen/Qwen3-30B-A3B": "qwen3_moe",
    "Qwen/Qwen3-30B-A3B-Base": "qwen3_moe",
    "Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3_moe",
    "Qwen/Qwen3-235B-A22B-Instruct-2507": "qwen3_moe",
    "openai/gpt-oss-20b": "gpt_oss",
    "openai/gpt-oss-120b": "gpt_oss",
    "deepseek-ai/DeepSeek-V3.1": "deepseek_v3",
    "deepseek-ai/DeepSeek-V3.1-Base": "deepseek_v3",
    "moonshotai/Kimi-K2-Thinking": "kimi_k2",
}


def safe_name(name: str) -> str:
    """A directory name for a model name: ``Qwen/Qwen3-8B`` -> ``Qwen--Qwen3-8B``."""
    return name.replace("/", "--")


def standin_seed(name: str) -> int:
    """The weight seed of stand-in `name` (a stable hash of the name)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


@functools.cache
def _native_tokenizer(family: Family) -> Any:
    from tml_renderers import tokenizers

    return getattr(tokenizers, family.tokenizer_class)()


@functools.cache
def _highest_id(family: Family) -> int:
    return highest_token_id(_native_tokenizer(family))


def highest_token_id(tokenizer: Any) -> int:
    """The largest token id `tokenizer` knows (specials included), probed via `decode_bytes`."""
    specials = [tokenizer.encode_special(s) for s in tokenizer.special_tokens()]

    def known(token_id: int) -> bool:
        try:
            tokenizer.decode_bytes([token_id])
        except Exception:
            return False
        return True

    low, high = 0, 1 << 22  # ids are dense from 0; bisect for the last decodable one
    while low < high:
        mid = (low + high + 1) // 2
        if known(mid):
            low = mid
        else:
            high = mid - 1
    return max([low, *specials])


def _eos_id(tokenizer: Any) -> int:
    return int(tokenizer.encode_special(tokenizer.eos_token))


class SharedBase:
    """One in-memory base model shared by every run and sampler on it (as PEFT adapters)."""

    def __init__(
        self,
        info: BaseModelInfo,
        model: torch.nn.Module,
        *,
        target_modules: dict[str, tuple[str, ...]],
        target_parameters: tuple[str, ...],
        decode: Callable[[list[int]], str] | None,
    ) -> None:
        self.info = info
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.target_modules = target_modules  # group ("attn"/"mlp"/"unembed") -> module names
        self.target_parameters = target_parameters  # fused MLP weights (MoE stand-ins)
        self.decode = decode
        self.peft: Any = None  # peft.PeftModel, created with the first adapter

    def add_adapter(self, adapter_name: str, config: Any) -> None:
        """Attach a new, freshly initialised adapter named `adapter_name`."""
        with warnings.catch_warnings():
            # PEFT notes that the config now names the cache dir as base (we write the lineup
            # name into adapter_config.json ourselves) and relays transformers deprecations.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            try:
                if self.peft is None:
                    self.peft = get_peft_model(self.model, config, adapter_name=adapter_name)
                else:
                    self.peft.add_adapter(adapter_name, config)
            except ValueError as exc:  # e.g. target modules that this model does not have
                raise EngineError(
                    f"Cannot attach a LoRA adapter to {self.info.name!r}: {exc}"
                ) from exc

    def delete_adapter(self, adapter_name: str) -> None:
        if self.peft is not None and adapter_name in self.peft.peft_config:
            with warnings.catch_warnings():
                # "Adapter X was active which is now deleted": every call activates its own.
                warnings.simplefilter("ignore", UserWarning)
                self.peft.delete_adapter(adapter_name)

    def adapter_parameters(self, adapter_name: str) -> dict[str, torch.nn.Parameter]:
        """The adapter's parameters keyed by PEFT's saved names (adapter name stripped)."""
        marker = f".{adapter_name}."
        found = {
            name.replace(marker, ".", 1): param
            for name, param in self.peft.named_parameters()
            if marker in name
        }
        return dict(sorted(found.items()))

    @contextlib.contextmanager
    def active(self, adapter_name: str | None) -> Iterator[torch.nn.Module]:
        """The model to call with only `adapter_name` active (None = the bare base model)."""
        if adapter_name is None:
            if self.peft is None:
                yield self.model
            else:
                with self.peft.disable_adapter():
                    yield self.model
            return
        self.peft.set_adapter(adapter_name)
        yield self.model

    def check_tokens(self, tokens: np.ndarray | list[int], what: str) -> None:
        """Raise EngineError when a token id is outside the vocabulary or the context is full."""
        array = np.asarray(tokens)
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            bad = int(array.max()) if array.max() >= self.vocab_size else int(array.min())
            raise EngineError(
                f"{what} holds token id {bad}, outside the vocabulary of {self.info.name!r} "
                f"(ids 0..{self.vocab_size - 1}); tokenize with that model's tokenizer."
            )
        if array.size > self.info.max_context_length:
            raise EngineError(
                f"{what} has {array.size} tokens, more than the context length "
                f"{self.info.max_context_length} of {self.info.name!r}; shorten it."
            )


class BaseModels:
    """The base models one engine can serve, loaded lazily and kept once in memory."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._loaded: dict[str, SharedBase] = {}
        self._tokenizer_dirs: dict[str, Path | None] = {}
        self._lock = threading.Lock()

    # ---- catalogue -------------------------------------------------------------------------

    def infos(self) -> list[BaseModelInfo]:
        """Every stand-in of the lineup (local-path models are not listed).

        Cheap: a tokenizer dir is reported only once exported (by `info(name)`), so listing
        the lineup does not export every family's tokenizer.
        """
        return [self.info(name, export_tokenizer=False) for name in STANDINS]

    def info(self, name: str, *, export_tokenizer: bool = True) -> BaseModelInfo:
        """Describe base model `name` (a lineup name or an absolute path to an HF model dir)."""
        if name in STANDINS:
            family = FAMILIES[STANDINS[name]]
            return BaseModelInfo(
                name=name,
                kind="stand-in",
                max_context_length=family.max_context_length,
                tokenizer_dir=self._tokenizer_dir(name, export=export_tokenizer),
                description=(
                    f"Local stand-in for {name}: the real {family.tokenizer_class} tokenizer with "
                    f"a tiny seeded random {family.key} model (2 layers, hidden 64); "
                    "not the real weights."
                ),
            )
        path = Path(name)
        if path.is_absolute():
            return _local_path_info(path)
        close = difflib.get_close_matches(name, list(STANDINS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise EngineError(
            f"Unknown base model {name!r}.{hint} Available: {', '.join(STANDINS)}, or an "
            "absolute path to a local Hugging Face model directory."
        )

    def _tokenizer_dir(self, name: str, *, export: bool) -> Path | None:
        family = FAMILIES[STANDINS[name]]
        with self._lock:
            if family.tokenizer_class not in self._tokenizer_dirs:
                if not export:
                    return None
                dest = self.cache_dir / "tokenizers" / family.tokenizer_class
                self._tokenizer_dirs[family.tokenizer_class] = _export_tokenizer(name, dest)
            return self._tokenizer_dirs[family.tokenizer_class]

    # ---- loading ---------------------------------------------------------------------------

    def get(self, name: str) -> SharedBase:
        """The shared in-memory base model `name`, built or loaded on first use."""
        key = _key(name)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
        info = self.info(name)
        base = self._load_standin(info) if info.kind == "stand-in" else _load_local(info)
        with self._lock:
            return self._loaded.setdefault(key, base)

    def standin_dir(self, name: str) -> Path:
        """Directory of stand-in `name`'s cached weights, built if missing."""
        if name not in STANDINS:
            raise EngineError(f"{name!r} is not a stand-in; stand-ins: {', '.join(STANDINS)}.")
        family = FAMILIES[STANDINS[name]]
        dest = self.cache_dir / "base_models" / safe_name(name)
        recipe = {
            "name": name,
            "family": family.key,
            "seed": standin_seed(name),
            "recipe_version": STANDIN_RECIPE_VERSION,
        }
        if _read_json(dest / "standin.json") == recipe:
            return dest
        _build_standin(dest, family, recipe)
        return dest

    def _load_standin(self, info: BaseModelInfo) -> SharedBase:
        family = FAMILIES[STANDINS[info.name]]
        model = AutoModelForCausalLM.from_pretrained(
            self.standin_dir(info.name), dtype=torch.float32
        )
        tokenizer = _native_tokenizer(family)
        top = _highest_id(family)

        def decode(ids: list[int]) -> str:
            return tokenizer.decode([i for i in ids if i <= top])

        targets = {
            "attn": family.attn_modules,
            "mlp": family.mlp_modules,
            "unembed": UNEMBED_MODULES,
        }
        return SharedBase(
            info,
            model,
            target_modules=targets,
            target_parameters=family.mlp_parameters,
            decode=decode,
        )


def _key(name: str) -> str:
    path = Path(name)
    return str(path.resolve()) if path.is_absolute() else name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _export_tokenizer(name: str, dest: Path) -> Path | None:
    """An HF tokenizer dir for `name` (prefect_tinker.models' exporter), or None if unavailable."""
    try:
        from prefect_tinker.models.tokenizers import export_hf_tokenizer
    except ImportError:
        try:
            from prefect_tinker.models.hf_export import export_hf_tokenizer
        except ImportError:
            return None
    try:
        return Path(export_hf_tokenizer(name, dest))
    except Exception as exc:  # the exporter is optional here; sampling/training do not need it
        logger.warning("Could not export the tokenizer of %s: %s", name, exc)
        return None


def _build_standin(dest: Path, family: Family, recipe: dict[str, Any]) -> None:
    tokenizer = _native_tokenizer(family)
    top = _highest_id(family)
    vocab_size = max(family.real_vocab_size, -(-(top + 1) // 64) * 64)
    config = family.make_config(vocab_size, _eos_id(tokenizer))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            tensor.copy_(torch.from_numpy(_init_values(name, tuple(tensor.shape), recipe["seed"])))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    (tmp / "standin.json").write_text(json.dumps(recipe, sort_keys=True), encoding="utf-8")
    if _read_json(dest / "standin.json") == recipe:  # another process just built the same bytes
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(dest, ignore_errors=True)  # a stale recipe
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # another process won the race; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)


def _init_values(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Deterministic initial values of weight `name`: norms 1, biases/sinks 0, others N(0, .02)."""
    leaf = name.rsplit(".", 1)[-1]
    if "norm" in name and len(shape) == 1:
        return np.ones(shape, dtype=np.float32)
    if leaf in {"bias", "sinks"} or leaf.endswith("_bias"):
        return np.zeros(shape, dtype=np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(INIT_STD)


def _local_path_info(path: Path) -> BaseModelInfo:
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise EngineError(
            f"Base model path {str(path)!r} is not a Hugging Face model directory "
            "(no readable config.json); pass a directory written by save_pretrained."
        )
    context = config.get("max_position_embeddings") or config.get("n_positions") or 2048
    return BaseModelInfo(
        name=str(path),
        kind="local-path",
        max_context_length=int(context),
        tokenizer_dir=path,
        description=(
            f"Local Hugging Face model at {path} ({config.get('model_type', '?')}), real weights."
        ),
    )


def _load_local(info: BaseModelInfo) -> SharedBase:
    path = Path(info.name)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as exc:
        raise EngineError(f"Cannot load the model at {str(path)!r}: {exc}") from exc
    leaves = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if _is_linear(mod)}
    targets = {
        "attn": tuple(m for m in ATTN_MODULES if m in leaves),
        "mlp": tuple(m for m in MLP_MODULES if m in leaves),
        "unembed": tuple(m for m in UNEMBED_MODULES if m in leaves),
    }
    return SharedBase(
        info, model, target_modules=targets, target_parameters=(), decode=_hf_decoder(path)
    )


def _is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear)


def _hf_decoder(path: Path) -> Callable[[list[int]], str] | None:
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception:
        return None
    return lambda ids: tokenizer.decode(ids)
