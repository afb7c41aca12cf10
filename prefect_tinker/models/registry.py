"""Tinker's model lineup: static facts, merged with what a live service reports.

Facts come from Tinker's public model lineup, tinker-cookbook (`model_info.py`,
`hyperparam_utils.py`) and the models' Hugging Face cards. Architecture shapes are the text
decoder's (vision towers are not LoRA-trained). `None` means "not recorded here", never a guess.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from prefect_tinker.errors import UnknownModelError

if TYPE_CHECKING:
    import tinker

TrainingType = Literal["Base", "Instruction", "Hybrid", "Reasoning", "Vision"]


@dataclass(frozen=True)
class LoraComponents:
    """LoRA parameters per unit of rank, split the way Tinker's train_* flags split them."""

    mlp: int
    attn: int
    unembed: int


@dataclass(frozen=True)
class Architecture:
    """Decoder shapes. MoE fields are 0 for dense models; `attention` is "gqa" or "mla"."""

    hidden_size: int
    vocab_size: int
    num_layers: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None  # dense MLP width (also the dense layers of MoE models)
    num_experts: int | None = 0  # routed experts; 0 = dense, None = MoE, count not recorded
    experts_per_token: int = 0
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    first_dense_layers: int = 0
    attention: Literal["gqa", "mla"] = "gqa"
    q_lora_rank: int | None = None  # MLA
    kv_lora_rank: int | None = None  # MLA
    qk_rope_head_dim: int | None = None  # MLA
    v_head_dim: int | None = None  # MLA
    # Hybrid architectures (linear attention, Mamba) whose LoRA size is not a function of the
    # shapes above carry Tinker's measured per-rank counts instead.
    measured_lora: LoraComponents | None = None

    @property
    def is_moe(self) -> bool:
        return self.num_experts != 0

    def to_hf_config(self) -> dict[str, Any]:
        """The shapes under Hugging Face `config.json` key names (recorded values only)."""
        names = {
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "num_experts": self.num_experts or None,
            "num_experts_per_tok": self.experts_per_token or None,
            "moe_intermediate_size": self.moe_intermediate_size,
            "n_shared_experts": self.num_shared_experts or None,
            "first_k_dense_replace": self.first_dense_layers or None,
            "q_lora_rank": self.q_lora_rank,
            "kv_lora_rank": self.kv_lora_rank,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "v_head_dim": self.v_head_dim,
        }
        return {k: v for k, v in names.items() if v is not None}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the lineup.

    Example:
        >>> get_model("Qwen/Qwen3-8B").architecture.hidden_size
        4096
    """

    name: str
    organization: str
    family: str  # "llama3", "qwen3", "qwen3.5", "deepseek-v3", "kimi-k2", "gpt-oss", "nemotron3"
    size: str  # "8B", "30B-A3B" (total-Aactive for MoE)
    training_type: TrainingType
    vision: bool
    renderers: tuple[str, ...]  # recommended first
    context_length: int  # from the model card; a live service may allow less
    architecture: Architecture
    tokenizer: str  # a name `get_tokenizer` resolves
    lr_family: Literal["llama", "qwen"] | None = None  # families with a published LR exponent
    notes: str = ""

    @property
    def is_moe(self) -> bool:
        return self.architecture.is_moe

    @property
    def is_chat(self) -> bool:
        return self.training_type != "Base"

    @property
    def total_params_b(self) -> float:
        """Total parameters in billions (from the size, e.g. "1T-A32B" → 1000)."""
        return _billions(self.size.split("-A")[0])

    @property
    def active_params_b(self) -> float:
        """Parameters active per token in billions (= total for dense models)."""
        parts = self.size.split("-A")
        return _billions(parts[1]) if len(parts) == 2 else self.total_params_b

    @property
    def hf_config(self) -> dict[str, Any]:
        """The architecture as an HF `config.json`-style dict (see Architecture.to_hf_config)."""
        return self.architecture.to_hf_config()

    @property
    def recommended_renderer(self) -> str:
        return self.renderers[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts, derived fields included."""
        out = asdict(self)
        out["renderers"] = list(self.renderers)
        out |= {
            "moe": self.is_moe,
            "chat": self.is_chat,
            "total_params_b": self.total_params_b,
            "active_params_b": self.active_params_b,
        }
        return out


def _billions(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([BT])", text)
    if match is None:
        raise ValueError(f"size {text!r} is not like '8B' or '1T'")
    value = float(match.group(1))
    return value * 1000 if match.group(2) == "T" else value


def _qwen3_dense(hidden: int, layers: int, heads: int, inter: int) -> Architecture:
    return Architecture(hidden, 151936, layers, heads, 8, 128, inter)


def _qwen3_moe(hidden: int, layers: int, heads: int, kv: int, experts_inter: int) -> Architecture:
    return Architecture(
        hidden, 151936, layers, heads, kv, 128, None, 128, 8, moe_intermediate_size=experts_inter
    )


def _llama(hidden: int, layers: int, heads: int, head_dim: int, inter: int) -> Architecture:
    return Architecture(hidden, 128256, layers, heads, 8, head_dim, inter)


def _deepseek_v3(experts: int, heads: int, first_dense: int, vocab: int) -> Architecture:
    return Architecture(
        7168,
        vocab,
        61,
        heads,
        heads,
        None,
        18432,
        experts,
        8,
        moe_intermediate_size=2048,
        num_shared_experts=1,
        first_dense_layers=first_dense,
        attention="mla",
        q_lora_rank=1536,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        v_head_dim=128,
    )


def _gpt_oss(layers: int, experts: int) -> Architecture:
    return Architecture(
        2880, 201088, layers, 64, 8, 64, None, experts, 4, moe_intermediate_size=2880
    )


def _measured(hidden: int, vocab: int, mlp: int, attn: int, moe: bool) -> Architecture:
    return Architecture(
        hidden,
        vocab,
        num_experts=None if moe else 0,
        measured_lora=LoraComponents(mlp, attn, hidden + vocab),
    )


_QWEN3_HYBRID = ("qwen3", "qwen3_disable_thinking")
_QWEN35 = ("qwen3_5", "qwen3_5_disable_thinking")
_GPT_OSS = ("gpt_oss_medium_reasoning", "gpt_oss_low_reasoning", "gpt_oss_high_reasoning")
_DEEPSEEK = ("deepseekv3", "deepseekv3_thinking")
_NEMOTRON = ("nemotron3", "nemotron3_disable_thinking")
_BASE = ("role_colon",)
_EARLIER = "earlier Tinker lineup (tinker-cookbook model_info)"


def _lineup() -> tuple[ModelSpec, ...]:
    q, ll, ds, km, oa, nv = "Qwen", "meta-llama", "deepseek-ai", "moonshotai", "openai", "nvidia"
    qwen235 = _qwen3_moe(4096, 94, 64, 4, 1536)
    qwen30 = _qwen3_moe(2048, 48, 32, 4, 768)
    qwen8 = _qwen3_dense(4096, 36, 32, 12288)
    qwen14 = _qwen3_dense(5120, 40, 40, 17408)
    qwen4 = _qwen3_dense(2560, 36, 32, 9728)
    llama3b = _llama(3072, 28, 24, 128, 8192)
    llama1b = _llama(2048, 16, 32, 64, 8192)
    llama8 = _llama(4096, 32, 32, 128, 14336)
    llama70 = _llama(8192, 80, 64, 128, 28672)
    dsv3 = _deepseek_v3(256, 128, 3, 129280)
    kimi = _deepseek_v3(384, 64, 1, 163840)
    qwen35_moe = _measured(2048, 248320, 16_281_600, 1_013_760, moe=True)
    qwen35_27 = _measured(5120, 248320, 4_325_376, 2_965_504, moe=False)
    S = ModelSpec
    return (
        S(f"{q}/Qwen3-VL-235B-A22B-Instruct", q, "qwen3", "235B-A22B", "Vision", True,
          ("qwen3_vl_instruct",), 262144, qwen235, "qwen3", "qwen"),
        S(f"{q}/Qwen3-VL-30B-A3B-Instruct", q, "qwen3", "30B-A3B", "Vision", True,
          ("qwen3_vl_instruct",), 262144, qwen30, "qwen3", "qwen"),
        S(f"{q}/Qwen3-235B-A22B-Instruct-2507", q, "qwen3", "235B-A22B", "Instruction", False,
          ("qwen3_instruct",), 262144, qwen235, "qwen3", "qwen"),
        S(f"{q}/Qwen3-30B-A3B-Instruct-2507", q, "qwen3", "30B-A3B", "Instruction", False,
          ("qwen3_instruct",), 262144, qwen30, "qwen3", "qwen"),
        S(f"{q}/Qwen3-30B-A3B", q, "qwen3", "30B-A3B", "Hybrid", False, _QWEN3_HYBRID, 32768,
          qwen30, "qwen3", "qwen"),
        S(f"{q}/Qwen3-30B-A3B-Base", q, "qwen3", "30B-A3B", "Base", False, _BASE, 32768, qwen30,
          "qwen3", "qwen"),
        S(f"{q}/Qwen3-32B", q, "qwen3", "32B", "Hybrid", False, _QWEN3_HYBRID, 32768,
          _qwen3_dense(5120, 64, 64, 25600), "qwen3", "qwen"),
        S(f"{q}/Qwen3-8B", q, "qwen3", "8B", "Hybrid", False, _QWEN3_HYBRID, 32768, qwen8,
          "qwen3", "qwen"),
        S(f"{q}/Qwen3-8B-Base", q, "qwen3", "8B", "Base", False, _BASE, 32768, qwen8, "qwen3",
          "qwen"),
        S(f"{q}/Qwen3-4B-Instruct-2507", q, "qwen3", "4B", "Instruction", False,
          ("qwen3_instruct",), 262144, _qwen3_dense(2560, 36, 32, 9728), "qwen3", "qwen"),
        # Earlier lineup entries (tinker-cookbook model_info), still served by some deployments.
        S(f"{q}/Qwen3-14B", q, "qwen3", "14B", "Hybrid", False, _QWEN3_HYBRID, 32768,
          qwen14, "qwen3", "qwen", _EARLIER),
        S(f"{q}/Qwen3-14B-Base", q, "qwen3", "14B", "Base", False, _BASE, 32768, qwen14,
          "qwen3", "qwen", _EARLIER),
        S(f"{q}/Qwen3-4B", q, "qwen3", "4B", "Hybrid", False, _QWEN3_HYBRID, 32768, qwen4,
          "qwen3", "qwen", _EARLIER),
        S(f"{q}/Qwen3-4B-Base", q, "qwen3", "4B", "Base", False, _BASE, 32768, qwen4, "qwen3",
          "qwen", _EARLIER),
        S(f"{q}/Qwen3-1.7B", q, "qwen3", "1.7B", "Hybrid", False, _QWEN3_HYBRID, 32768,
          _qwen3_dense(2048, 28, 16, 6144), "qwen3", "qwen", _EARLIER),
        S(f"{q}/Qwen3-0.6B", q, "qwen3", "0.6B", "Hybrid", False, _QWEN3_HYBRID, 32768,
          _qwen3_dense(1024, 28, 16, 3072), "qwen3", "qwen", _EARLIER),
        S(f"{q}/Qwen3.5-397B-A17B", q, "qwen3.5", "397B-A17B", "Hybrid", True, _QWEN35, 262144,
          _measured(4096, 248320, 96_030_720, 2_841_600, moe=True), "qwen3.5", "qwen",
          "hybrid linear attention; LoRA size from Tinker's measured table"),
        S(f"{q}/Qwen3.5-35B-A3B", q, "qwen3.5", "35B-A3B", "Hybrid", True, _QWEN35, 262144,
          qwen35_moe, "qwen3.5", "qwen"),
        S(f"{q}/Qwen3.5-27B", q, "qwen3.5", "27B", "Hybrid", True, _QWEN35, 262144, qwen35_27,
          "qwen3.5", "qwen"),
        S(f"{q}/Qwen3.5-4B", q, "qwen3.5", "4B", "Hybrid", True, _QWEN35, 262144,
          _measured(2560, 248320, 1_130_496, 897_024, moe=False), "qwen3.5", "qwen"),
        S(f"{q}/Qwen3.6-35B-A3B", q, "qwen3.5", "35B-A3B", "Hybrid", True, _QWEN35, 262144,
          qwen35_moe, "qwen3.5", "qwen", "Qwen3.5 architecture and tokenizer"),
        S(f"{q}/Qwen3.6-27B", q, "qwen3.5", "27B", "Hybrid", True, _QWEN35, 262144, qwen35_27,
          "qwen3.5", "qwen", "Qwen3.5 architecture and tokenizer"),
        S(f"{ll}/Llama-3.3-70B-Instruct", ll, "llama3", "70B", "Instruction", False,
          ("llama3",), 131072, llama70, "meta-llama/Llama-3.3-70B-Instruct", "llama"),
        S(f"{ll}/Llama-3.1-70B", ll, "llama3", "70B", "Base", False, _BASE, 131072, llama70,
          "meta-llama/Llama-3.1-70B", "llama"),
        S(f"{ll}/Llama-3.1-8B-Instruct", ll, "llama3", "8B", "Instruction", False, ("llama3",),
          131072, llama8, "meta-llama/Llama-3.1-8B-Instruct", "llama"),
        S(f"{ll}/Llama-3.1-8B", ll, "llama3", "8B", "Base", False, _BASE, 131072, llama8,
          "meta-llama/Llama-3.1-8B", "llama"),
        S(f"{ll}/Llama-3.2-3B-Instruct", ll, "llama3", "3B", "Instruction", False, ("llama3",),
          131072, llama3b, "meta-llama/Llama-3.2-3B-Instruct", "llama", _EARLIER),
        S(f"{ll}/Llama-3.2-1B-Instruct", ll, "llama3", "1B", "Instruction", False, ("llama3",),
          131072, llama1b, "meta-llama/Llama-3.2-1B-Instruct", "llama", _EARLIER),
        S(f"{ll}/Llama-3.2-3B", ll, "llama3", "3B", "Base", False, _BASE, 131072,
          llama3b, "meta-llama/Llama-3.2-3B", "llama"),
        S(f"{ll}/Llama-3.2-1B", ll, "llama3", "1B", "Base", False, _BASE, 131072,
          llama1b, "meta-llama/Llama-3.2-1B", "llama"),
        S(f"{ds}/DeepSeek-V3.1", ds, "deepseek-v3", "671B-A37B", "Hybrid", False, _DEEPSEEK,
          131072, dsv3, "deepseek-v3.1"),
        S(f"{ds}/DeepSeek-V3.1-Base", ds, "deepseek-v3", "671B-A37B", "Base", False, _BASE,
          131072, dsv3, "deepseek-v3.1"),
        S(f"{km}/Kimi-K2-Thinking", km, "kimi-k2", "1T-A32B", "Reasoning", False, ("kimi_k2",),
          262144, kimi, "kimi-k2-thinking"),
        S(f"{km}/Kimi-K2.5", km, "kimi-k2", "1T-A32B", "Reasoning", True,
          ("kimi_k25", "kimi_k25_disable_thinking"), 262144, kimi, "kimi-k2.5"),
        S(f"{km}/Kimi-K2.6", km, "kimi-k2", "1T-A32B", "Reasoning", True,
          ("kimi_k25", "kimi_k25_disable_thinking"), 262144, kimi, "kimi-k2.6"),
        S(f"{oa}/gpt-oss-120b", oa, "gpt-oss", "117B-A5.1B", "Reasoning", False, _GPT_OSS,
          131072, _gpt_oss(36, 128), "harmony"),
        S(f"{oa}/gpt-oss-20b", oa, "gpt-oss", "21B-A3.6B", "Reasoning", False, _GPT_OSS, 131072,
          _gpt_oss(24, 32), "harmony"),
        S(f"{nv}/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", nv, "nemotron3", "30B-A3B", "Hybrid",
          False, _NEMOTRON, 262144,
          _measured(2688, 131072, 11_346_176, 584_832, moe=True), "nemotron3", None,
          "hybrid Mamba-2/attention MoE; LoRA size from Tinker's measured table"),
        S(f"{nv}/NVIDIA-Nemotron-3-Super-120B-A12B-BF16", nv, "nemotron3", "120B-A12B",
          "Hybrid", False, _NEMOTRON, 262144,
          _measured(4096, 131072, 111_349_760, 1_675_264, moe=True), "nemotron3", None,
          "hybrid Mamba-2/attention MoE; LoRA size from Tinker's measured table"),
    )  # fmt: skip


MODELS: dict[str, ModelSpec] = {m.name: m for m in _lineup()}
_BY_LOWER: dict[str, ModelSpec] = {name.lower(): m for name, m in MODELS.items()}


def list_models() -> list[ModelSpec]:
    """The static lineup, in Tinker's listing order."""
    return list(MODELS.values())


def close_matches(name: str, candidates: list[str] | None = None, n: int = 3) -> list[str]:
    """Names in `candidates` (default: the lineup) that look like `name`, best first."""
    pool = candidates if candidates is not None else list(MODELS)
    key = name.strip().lower()
    tail = key.rsplit("/", 1)[-1]

    def score(candidate: str) -> float:
        lowered = candidate.lower()
        ratio = difflib.SequenceMatcher(None, key, lowered).ratio()
        prefix = lowered.startswith(key) or key.startswith(lowered)
        contained = bool(tail) and tail in lowered.rsplit("/", 1)[-1]
        return ratio + (0.5 if prefix else 0.0) + (0.3 if contained else 0.0)

    ranked = sorted(pool, key=score, reverse=True)
    return [c for c in ranked if score(c) >= 0.6][:n]


def get_model(name: str) -> ModelSpec:
    """The lineup entry named `name` (exact, or differing only in case).

    Raises UnknownModelError listing close matches.

    Example:
        >>> get_model("qwen/qwen3-8b").name
        'Qwen/Qwen3-8B'
    """
    spec = MODELS.get(name) or _BY_LOWER.get(name.strip().lower())
    if spec is not None:
        return spec
    matches = close_matches(name)
    hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
    raise UnknownModelError(
        f"Unknown model {name!r}.{hint} Run `prefect-tinker models list` for the lineup."
    )


@dataclass(frozen=True)
class LiveModel:
    """A model as a live Tinker service reports it, with its static facts when known."""

    name: str
    spec: ModelSpec | None
    served: bool  # listed by the service
    trainable: bool | None
    sampleable: bool | None
    max_context_length: int | None  # the service's limit, else the model card's

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "spec"}
        out["spec"] = None if self.spec is None else self.spec.to_dict()
        return out


def _rest_client(client: Any) -> Any:
    """A RestClient for `client`, which is one already or a ServiceClient."""
    import tinker

    if isinstance(client, tinker.ServiceClient):
        return client._rest_client()  # the SDK's own session-less route, without its warning
    return client


def live_models(client: tinker.RestClient | tinker.ServiceClient) -> list[LiveModel]:
    """The lineup merged with the service's `get_server_capabilities`.

    Models the service serves come first in its order (with static facts when the lineup knows
    them); lineup models it does not serve follow with `served=False`.

    Example:
        >>> [m.name for m in live_models(tinker.RestClient()) if m.trainable]
    """
    rest = _rest_client(client)
    capabilities = rest.get_server_capabilities().result()
    out: list[LiveModel] = []
    seen: set[str] = set()
    for entry in capabilities.supported_models:
        if not entry.model_name:
            continue
        spec = MODELS.get(entry.model_name) or _BY_LOWER.get(entry.model_name.lower())
        context = entry.max_context_length or (spec.context_length if spec else None)
        out.append(
            LiveModel(entry.model_name, spec, True, entry.trainable, entry.sampleable, context)
        )
        seen.add(entry.model_name.lower())
    for spec in MODELS.values():
        if spec.name.lower() not in seen:
            out.append(LiveModel(spec.name, spec, False, False, False, spec.context_length))
    return out
