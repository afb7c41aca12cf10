"""Renderers: chat messages → token ids + per-token loss weights, and prompts for sampling.

Chat models render through tml-renderers (Qwen3 with/without thinking, Qwen3.5, DeepSeek, Kimi,
GLM, Nemotron, gpt-oss); Llama 3 chat uses its published header format over the HF tokenizer;
base models use a plain ``Role: text`` format. Messages are OpenAI-style dicts
(``{"role": "user", "content": "..."}``).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefect_tinker.errors import ConfigurationError, DatasetError, UnknownModelError
from prefect_tinker.models.tokenizers import Tokenizer, get_tokenizer, native_family_for

TrainOn = Literal["last_assistant", "all_assistant", "all"]
TRAIN_ON: tuple[str, ...] = ("last_assistant", "all_assistant", "all")
Message = Mapping[str, Any]

# gpt-oss puts "Current date" in its system header; pinning it keeps rendered data reproducible.
HARMONY_CURRENT_DATE = "2025-08-05"


@dataclass(frozen=True, slots=True)
class RenderedSequence:
    """One training sequence: token ids and a loss weight per token (not yet shifted)."""

    tokens: list[int]
    weights: list[float]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for w in self.weights if w > 0)


class Renderer(abc.ABC):
    """Turns conversations into training sequences and sampling prompts.

    Example:
        >>> r = get_renderer(None, "Qwen/Qwen3-8B")
        >>> [seq] = r.render([{"role": "user", "content": "Hi"},
        ...                   {"role": "assistant", "content": "Hello!"}])
        >>> r.tokenizer.decode([t for t, w in zip(seq.tokens, seq.weights) if w])
        '<think>\\n\\n</think>\\n\\nHello!<|im_end|>'
    """

    name: str
    tokenizer: Tokenizer

    @abc.abstractmethod
    def _render(self, messages: Sequence[Message], train_on: TrainOn) -> list[RenderedSequence]:
        """Untruncated sequences of one conversation."""

    @abc.abstractmethod
    def generation_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Tokens to sample the next assistant message from."""

    @abc.abstractmethod
    def stop_sequences(self) -> list[int] | list[str]:
        """Stop token ids (or strings) that end an assistant message when sampling."""

    @abc.abstractmethod
    def parse_response(self, tokens: Sequence[int]) -> dict[str, Any]:
        """The assistant message that sampled `tokens` encode, as an OpenAI-style dict."""

    def render(
        self,
        messages: Sequence[Message],
        *,
        train_on: TrainOn = "last_assistant",
        max_length: int | None = None,
    ) -> list[RenderedSequence]:
        """Training sequences of one conversation, truncated to `max_length` tokens.

        `last_assistant` trains on the final assistant message, `all_assistant` on every
        assistant message (renderers that drop earlier reasoning from the history give one
        sequence per assistant turn), `all` on every token.
        """
        if train_on not in TRAIN_ON:
            raise ConfigurationError(f"train_on={train_on!r}; use one of {', '.join(TRAIN_ON)}.")
        if not any(m.get("role") == "assistant" for m in messages) and train_on != "all":
            raise DatasetError(
                f"the conversation has no assistant message to train on ({train_on})."
            )
        if train_on == "last_assistant":
            # Messages after the last assistant one carry nothing to train on.
            last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
            messages = messages[: last + 1]
        sequences = self._render(messages, train_on)
        if max_length is not None and any(len(s.tokens) > max_length for s in sequences):
            sequences = [
                RenderedSequence(s.tokens[:max_length], s.weights[:max_length]) for s in sequences
            ]
        return sequences

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                raise DatasetError(f"only text content parts can be rendered here, got {part!r}.")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise DatasetError(f"message content must be a string or a list of parts, got {content!r}.")


class NativeRenderer(Renderer):
    """A tml-renderers renderer; `native` is the underlying object."""

    def __init__(self, name: str, native: Any, tokenizer: Tokenizer) -> None:
        from tml_renderers import chat

        self.name = name
        self.native = native
        self.tokenizer = tokenizer
        self._message_list = chat.MessageList.from_oss_messages
        self._message_list_of = chat.MessageList
        self._model_kind = chat.AuthorKind.Model
        self._untrained = chat.MessageMetadata(training_metadata=chat.TrainingMetadata(0.0, False))

    def _messages(self, messages: Sequence[Message]) -> Any:
        try:
            return self._message_list(messages)
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"cannot read messages: {exc}") from exc

    @staticmethod
    def _tokens(spans: Sequence[Any]) -> list[int]:
        if len(spans) == 1:
            return spans[0].span.tokens  # a fresh list on every access
        tokens: list[int] = []
        for span in spans:
            inner = span.span
            if not hasattr(inner, "tokens"):
                raise DatasetError(f"non-text content ({type(inner).__name__}) is not supported.")
            tokens.extend(inner.tokens)
        return tokens

    def _render(self, messages: Sequence[Message], train_on: TrainOn) -> list[RenderedSequence]:
        if train_on == "all_assistant":
            examples = self.native.render_for_sft(self._messages(messages))
            return [
                RenderedSequence(
                    self._tokens(e.input_token_spans), e.per_token_loss_weight_unshifted
                )
                for e in examples
            ]
        examples = self.native.render_for_sft(self._only_last_assistant_trained(messages))
        if not examples:
            raise DatasetError("the renderer produced no training example for this conversation.")
        last = examples[-1]
        tokens = self._tokens(last.input_token_spans)
        if train_on == "all":
            return [RenderedSequence(tokens, [1.0] * len(tokens))]
        return [RenderedSequence(tokens, last.per_token_loss_weight_unshifted)]

    def _only_last_assistant_trained(self, messages: Sequence[Message]) -> Any:
        """The conversation (ending in its last assistant message) with every earlier assistant
        message given loss weight 0.

        tml-renderers reads this per-message weight: renderers that re-render the history for
        each trained turn then render one sequence instead of one per turn.
        """
        converted = self._messages(messages)
        if len(messages) < 2 or messages[-2].get("role") == "assistant":
            if not any(m.get("role") == "assistant" for m in messages[:-1]):
                return converted
            # Consecutive assistant messages: find the last one's own messages by converting it
            # separately.
            head = self._messages(messages[:-1]).messages
            tail = self._messages(messages[-1:]).messages
        else:
            # The final assistant message converts to the trailing run of model-authored messages.
            items = converted.messages
            cut = len(items)
            while cut and items[cut - 1].author.kind == self._model_kind:
                cut -= 1
            head, tail = items[:cut], items[cut:]
            if not any(m.author.kind == self._model_kind for m in head):
                return converted
        model, untrained = self._model_kind, self._untrained
        head = [m.copy(message_metadata=untrained) if m.author.kind == model else m for m in head]
        return self._message_list_of(head + tail)

    def generation_prompt(self, messages: Sequence[Message]) -> list[int]:
        spans, _parser = self.native.render_for_completion(self._messages(messages))
        return self._tokens(spans)

    def stop_sequences(self) -> list[int] | list[str]:
        stop = self.native.stop()
        if stop is None:
            return [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        return [stop] if isinstance(stop, str) else list(stop)

    def parse_response(self, tokens: Sequence[int]) -> dict[str, Any]:
        from tml_renderers import chat

        _spans, parser = self.native.render_for_completion(self._messages([]))
        parsed = chat.MessageList(parser.parse_tokens(list(tokens))).to_oss_messages()
        assistant = [m for m in parsed if m.get("role") == "assistant"]
        if not assistant:
            return {"role": "assistant", "content": ""}
        merged = dict(assistant[0])
        merged["content"] = "".join(_text_of(m.get("content", "")) for m in assistant)
        return merged


class _PiecewiseRenderer(Renderer):
    """Renders each message as a header (never trained) and a body (trained for assistants)."""

    @abc.abstractmethod
    def _pieces(self, message: Message) -> tuple[list[int], list[int]]:
        """Header and body tokens of one message."""

    def _prefix(self) -> list[int]:
        return []

    def _render(self, messages: Sequence[Message], train_on: TrainOn) -> list[RenderedSequence]:
        last_assistant = max(
            (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
        )
        tokens = self._prefix()
        weights = [1.0 if train_on == "all" else 0.0] * len(tokens)
        for index, message in enumerate(messages):
            header, body = self._pieces(message)
            is_assistant = message.get("role") == "assistant"
            trained = train_on == "all" or (
                is_assistant and (train_on == "all_assistant" or index == last_assistant)
            )
            tokens += header + body
            weights += [1.0 if train_on == "all" else 0.0] * len(header)
            weights += [1.0 if trained else 0.0] * len(body)
        return [RenderedSequence(tokens, weights)]


class RoleColonRenderer(_PiecewiseRenderer):
    """``User: text`` / ``Assistant: text`` turns separated by blank lines, for base models."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.name = "role_colon"
        self.tokenizer = tokenizer

    def _prefix(self) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [bos] if bos is not None and self.tokenizer.adds_bos else []

    def _pieces(self, message: Message) -> tuple[list[int], list[int]]:
        role = str(message.get("role", "")).capitalize()
        if not role:
            raise DatasetError(f"message without a role: {dict(message)!r}")
        text = _text_of(message.get("content", ""))
        return self.tokenizer.encode(f"{role}:"), self.tokenizer.encode(f" {text}\n\n")

    def generation_prompt(self, messages: Sequence[Message]) -> list[int]:
        tokens = self._prefix()
        for message in messages:
            header, body = self._pieces(message)
            tokens += header + body
        return tokens + self.tokenizer.encode("Assistant:")

    def stop_sequences(self) -> list[str]:
        return ["\n\nUser:"]

    def parse_response(self, tokens: Sequence[int]) -> dict[str, Any]:
        text = self.tokenizer.decode(list(tokens))
        return {"role": "assistant", "content": text.split("\n\nUser:")[0].strip()}


class Llama3Renderer(_PiecewiseRenderer):
    """Llama 3 Instruct's header format (no default system prompt)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.name = "llama3"
        self.tokenizer = tokenizer
        specials = tokenizer.special_tokens
        try:
            self._ids = {
                k: specials[f"<|{k}|>"]
                for k in ("begin_of_text", "start_header_id", "end_header_id", "eot_id")
            }
        except KeyError as exc:
            raise ConfigurationError(
                f"The llama3 renderer needs a Llama 3 tokenizer; {tokenizer.name!r} lacks {exc}."
            ) from exc

    def _prefix(self) -> list[int]:
        return [self._ids["begin_of_text"]]

    def _header(self, role: str) -> list[int]:
        ids = self._ids
        encoded = self.tokenizer.encode(role)
        return [
            ids["start_header_id"],
            *encoded,
            ids["end_header_id"],
            *self.tokenizer.encode("\n\n"),
        ]

    def _pieces(self, message: Message) -> tuple[list[int], list[int]]:
        text = _text_of(message.get("content", ""))
        body = self.tokenizer.encode(text) + [self._ids["eot_id"]]
        return self._header(str(message.get("role", ""))), body

    def generation_prompt(self, messages: Sequence[Message]) -> list[int]:
        tokens = self._prefix()
        for message in messages:
            header, body = self._pieces(message)
            tokens += header + body
        return tokens + self._header("assistant")

    def stop_sequences(self) -> list[int]:
        return [self._ids["eot_id"]]

    def parse_response(self, tokens: Sequence[int]) -> dict[str, Any]:
        ids = list(tokens)
        if self._ids["eot_id"] in ids:
            ids = ids[: ids.index(self._ids["eot_id"])]
        return {"role": "assistant", "content": self.tokenizer.decode(ids)}


@dataclass(frozen=True)
class RendererInfo:
    """A renderer name: how to build it and which tokenizer family it speaks."""

    name: str
    tokenizer: str | None  # native family key; None = the model's own tokenizer
    factory: Callable[[], Any] | None  # tml-renderers constructor; None = built here
    description: str


def _tml(class_name: str, method: str | None = None, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        from tml_renderers import renderers

        cls = getattr(renderers, class_name)
        return getattr(cls, method)(**kwargs) if method else cls(**kwargs)

    return build


_harmony = {"current_date": HARMONY_CURRENT_DATE}

RENDERERS: dict[str, RendererInfo] = {
    r.name: r
    for r in (
        RendererInfo("qwen3", "qwen3", _tml("Qwen3"), "Qwen3 hybrid, thinking on"),
        RendererInfo("qwen3_disable_thinking", "qwen3", _tml("Qwen3", "disable_thinking"),
                     "Qwen3 hybrid, empty think block, answer only"),
        RendererInfo("qwen3_instruct", "qwen3", _tml("Qwen3", "instruct"),
                     "Qwen3 Instruct-2507 (no think block)"),
        RendererInfo("qwen3_vl", "qwen3", _tml("Qwen3", "vision"), "Qwen3-VL, thinking"),
        RendererInfo("qwen3_vl_instruct", "qwen3", _tml("Qwen3", "vision_instruct"),
                     "Qwen3-VL Instruct"),
        RendererInfo("qwen3_5", "qwen3.5", _tml("Qwen35"), "Qwen3.5/3.6, thinking on"),
        RendererInfo("qwen3_5_disable_thinking", "qwen3.5", _tml("Qwen35", "disable_thinking"),
                     "Qwen3.5/3.6, thinking off"),
        RendererInfo("deepseekv3", "deepseek-v3.1", _tml("DeepSeekV31"),
                     "DeepSeek-V3.1, non-thinking"),
        RendererInfo("deepseekv3_thinking", "deepseek-v3.1", _tml("DeepSeekV31", "thinking"),
                     "DeepSeek-V3.1, thinking"),
        RendererInfo("deepseek_r1", "deepseek-r1", _tml("DeepSeekR1"), "DeepSeek-R1"),
        RendererInfo("kimi_k2", "kimi-k2-thinking", _tml("KimiK2"), "Kimi K2 Thinking"),
        RendererInfo("kimi_k25", "kimi-k2.5", _tml("KimiK25"), "Kimi K2.5/K2.6, thinking"),
        RendererInfo("kimi_k25_disable_thinking", "kimi-k2.5", _tml("KimiK25", "disable_thinking"),
                     "Kimi K2.5/K2.6, thinking off"),
        RendererInfo("glm52", "glm", _tml("Glm52"), "GLM 5.2"),
        RendererInfo("glm53", "glm", _tml("Glm53"), "GLM 5.3"),
        RendererInfo("nemotron3", "nemotron3", _tml("Nemotron3"), "Nemotron 3, thinking"),
        RendererInfo("nemotron3_disable_thinking", "nemotron3",
                     _tml("Nemotron3", "disable_thinking"), "Nemotron 3, thinking off"),
        RendererInfo("gpt_oss_medium_reasoning", "harmony", _tml("GptOss", **_harmony),
                     "gpt-oss Harmony, medium reasoning"),
        RendererInfo("gpt_oss_low_reasoning", "harmony", _tml("GptOss", "low", **_harmony),
                     "gpt-oss Harmony, low reasoning"),
        RendererInfo("gpt_oss_high_reasoning", "harmony", _tml("GptOss", "high", **_harmony),
                     "gpt-oss Harmony, high reasoning"),
        RendererInfo("llama3", None, None, "Llama 3 Instruct headers"),
        RendererInfo("role_colon", None, None, "'User: ...' / 'Assistant: ...' for base models"),
    )
}  # fmt: skip

# Default renderer of models outside the lineup, by native tokenizer family.
_FAMILY_DEFAULTS = {
    "qwen3": "qwen3",
    "qwen3.5": "qwen3_5",
    "deepseek-v3": "deepseekv3",
    "deepseek-v3.1": "deepseekv3",
    "deepseek-r1": "deepseek_r1",
    "kimi-k2-thinking": "kimi_k2",
    "kimi-k2.5": "kimi_k25",
    "kimi-k2.6": "kimi_k25",
    "glm": "glm53",
    "nemotron3": "nemotron3",
    "harmony": "gpt_oss_medium_reasoning",
}


def recommended_renderer(model: str) -> str:
    """The renderer a model is meant to be used with (the lineup's first choice)."""
    from prefect_tinker.models.registry import get_model

    try:
        return get_model(model).recommended_renderer
    except UnknownModelError:
        family = native_family_for(model)
        return _FAMILY_DEFAULTS.get(family.key, "role_colon") if family else "role_colon"


def _model_tokenizer(model: str) -> Tokenizer:
    from prefect_tinker.models.registry import _BY_LOWER, MODELS

    spec = MODELS.get(model) or _BY_LOWER.get(model.lower())
    return get_tokenizer(spec.tokenizer if spec else model)


@functools.cache
def get_renderer(name: str | None, model: str) -> Renderer:
    """The renderer `name` for `model` (None = the model's recommended one); built once.

    Raises ConfigurationError for an unknown renderer name.

    Example:
        >>> get_renderer(None, "Qwen/Qwen3-8B-Base").name
        'role_colon'
    """
    chosen = name or recommended_renderer(model)
    info = RENDERERS.get(chosen)
    if info is None:
        raise ConfigurationError(
            f"Unknown renderer {chosen!r}; choose one of: {', '.join(sorted(RENDERERS))}."
        )
    if chosen == "role_colon":
        return RoleColonRenderer(_model_tokenizer(model))
    if chosen == "llama3":
        return Llama3Renderer(_model_tokenizer(model))
    assert info.factory is not None and info.tokenizer is not None
    return NativeRenderer(chosen, info.factory(), get_tokenizer(info.tokenizer))
