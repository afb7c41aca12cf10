"""Tokenizers behind one interface: tml-renderers' native ones, or Hugging Face `tokenizer.json`.

`get_tokenizer` resolves a model name (``"Qwen/Qwen3-8B"``), a family key (``"qwen3"``) or a
local directory holding ``tokenizer.json``. Model families that tml-renderers ships are served
offline by its native tokenizers; other models (Llama 3) come from a ``tokenizer.json`` in a
local directory or the huggingface_hub cache. Each tokenizer is loaded once per process.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_tinker.errors import TokenizerNotFoundError

LLAMA3_TOKENIZER_REPO = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"

_QWEN3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GLM_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_O200K_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NEMOTRON_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_KIMI_PATTERN = (
    r"[\p{Han}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# DeepSeek pre-tokenizes in three successive splits (digits, CJK runs, then the rest).
_DEEPSEEK_PATTERNS = (
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)


@dataclass(frozen=True)
class NativeFamily:
    """A tokenizer family shipped by tml-renderers."""

    key: str
    class_name: str
    split_patterns: tuple[str, ...]
    adds_bos: bool = False  # whether HF-style `add_special_tokens=True` prepends BOS
    nfc: bool = False  # whether text is NFC-normalized before splitting


NATIVE_FAMILIES: dict[str, NativeFamily] = {
    f.key: f
    for f in (
        NativeFamily("qwen3", "Qwen3Tokenizer", (_QWEN3_PATTERN,), nfc=True),
        NativeFamily("qwen3.5", "Qwen35Tokenizer", (_QWEN35_PATTERN,), nfc=True),
        NativeFamily("deepseek-v3", "DeepSeekV3Tokenizer", _DEEPSEEK_PATTERNS, adds_bos=True),
        NativeFamily("deepseek-v3.1", "DeepSeekV31Tokenizer", _DEEPSEEK_PATTERNS, adds_bos=True),
        NativeFamily("deepseek-r1", "DeepSeekR1Tokenizer", _DEEPSEEK_PATTERNS, adds_bos=True),
        NativeFamily("deepseek-v4", "DeepSeekV4Tokenizer", _DEEPSEEK_PATTERNS, adds_bos=True),
        NativeFamily("deepseek-v4.1", "DeepSeekV41Tokenizer", _DEEPSEEK_PATTERNS, adds_bos=True),
        NativeFamily("glm", "GlmTokenizer", (_GLM_PATTERN,)),
        NativeFamily("harmony", "HarmonyTokenizer", (_O200K_PATTERN,)),
        NativeFamily("o200k", "O200kBaseChatTokenizer", (_O200K_PATTERN,)),
        NativeFamily("kimi-k2-base", "KimiK2BaseTokenizer", (_KIMI_PATTERN,)),
        NativeFamily("kimi-k2-instruct", "KimiK2InstructTokenizer", (_KIMI_PATTERN,)),
        NativeFamily("kimi-k2-thinking", "KimiK2ThinkingTokenizer", (_KIMI_PATTERN,)),
        NativeFamily("kimi-k2.5", "KimiK25Tokenizer", (_KIMI_PATTERN,)),
        NativeFamily("kimi-k2.6", "KimiK26Tokenizer", (_KIMI_PATTERN,)),
        NativeFamily("nemotron3", "Nemotron3Tokenizer", (_NEMOTRON_PATTERN,)),
    )
}

# Lower-cased model-name prefixes (without organization) → native family, most specific first.
_NAME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("qwen3.5", "qwen3.5"),
    ("qwen3", "qwen3"),
    ("deepseek-v3.1", "deepseek-v3.1"),
    ("deepseek-v3", "deepseek-v3"),
    ("deepseek-r1", "deepseek-r1"),
    ("deepseek-v4.1", "deepseek-v4.1"),
    ("deepseek-v4", "deepseek-v4"),
    ("glm", "glm"),
    ("gpt-oss", "harmony"),
    ("kimi-k2.6", "kimi-k2.6"),
    ("kimi-k2.5", "kimi-k2.5"),
    ("kimi-k2-thinking", "kimi-k2-thinking"),
    ("kimi-k2-instruct", "kimi-k2-instruct"),
    ("kimi-k2-base", "kimi-k2-base"),
    ("kimi-k2", "kimi-k2-thinking"),
    ("nvidia-nemotron-3", "nemotron3"),
    ("nemotron-3", "nemotron3"),
    ("nemotron3", "nemotron3"),
)


class Tokenizer(abc.ABC):
    """One tokenizer interface over native and Hugging Face backends.

    Example:
        >>> tok = get_tokenizer("Qwen/Qwen3-8B")
        >>> tok.decode(tok.encode("Hello world"))
        'Hello world'
    """

    name: str
    vocab_size: int  # max token id + 1, special tokens included
    bos_token: str | None
    eos_token: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    special_tokens: dict[str, int]  # surface text -> id
    adds_bos: bool = False  # whether `encode(..., add_special_tokens=True)` prepends BOS

    @abc.abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, treating special-token text as plain text."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text of `ids` (invalid UTF-8 is replaced)."""

    def encode(
        self, text: str, add_special_tokens: bool = False, *, parse_special: bool = False
    ) -> list[int]:
        """Token ids of `text`.

        `add_special_tokens` prepends BOS where the family's HF tokenizer does; `parse_special`
        turns special-token text such as ``<|im_end|>`` into its single id.
        """
        ids = self._encode_parsing_special(text) if parse_special else self.encode_ordinary(text)
        if add_special_tokens and self.adds_bos and self.bos_token_id is not None:
            return [self.bos_token_id, *ids]
        return ids

    def encode_batch(
        self, texts: Iterable[str], add_special_tokens: bool = False, *, parse_special: bool = False
    ) -> list[list[int]]:
        """`encode` applied to each text."""
        return [self.encode(t, add_special_tokens, parse_special=parse_special) for t in texts]

    def is_special(self, token_id: int) -> bool:
        """True for the ids of special tokens."""
        return token_id in self._special_ids

    @functools.cached_property
    def _special_ids(self) -> frozenset[int]:
        return frozenset(self.special_tokens.values())

    @functools.cached_property
    def _special_splitter(self) -> re.Pattern[str] | None:
        if not self.special_tokens:
            return None
        surfaces = sorted(self.special_tokens, key=len, reverse=True)
        return re.compile("|".join(re.escape(s) for s in surfaces if s))

    def _encode_parsing_special(self, text: str) -> list[int]:
        splitter = self._special_splitter
        if splitter is None:
            return self.encode_ordinary(text)
        ids: list[int] = []
        pos = 0
        for match in splitter.finditer(text):
            if match.start() > pos:
                ids.extend(self.encode_ordinary(text[pos : match.start()]))
            ids.append(self.special_tokens[match.group()])
            pos = match.end()
        if pos < len(text):
            ids.extend(self.encode_ordinary(text[pos:]))
        return ids

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, vocab_size={self.vocab_size})"


class NativeTokenizer(Tokenizer):
    """A tml-renderers tokenizer; `native` is the underlying object renderers use."""

    def __init__(self, family: NativeFamily) -> None:
        from tml_renderers import tokenizers as native_tokenizers

        self.family = family
        self.name = family.key
        self.native = getattr(native_tokenizers, family.class_name)()
        self.adds_bos = family.adds_bos
        specials: dict[str, int] = {}
        for short_name in self.native.special_tokens():
            token_id = self.native.encode_special(short_name)
            specials[self.native.decode([token_id])] = token_id
        self.special_tokens = specials
        self.bos_token_id = _special_id(self.native, self.native.bos_token)
        self.eos_token_id = _special_id(self.native, self.native.eos_token)
        self.bos_token = (
            None if self.bos_token_id is None else self.native.decode([self.bos_token_id])
        )
        self.eos_token = (
            None if self.eos_token_id is None else self.native.decode([self.eos_token_id])
        )

    def encode_ordinary(self, text: str) -> list[int]:
        return self.native.encode_ordinary(text)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self.native.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Raw bytes of `ids` (a token may hold part of a UTF-8 character)."""
        return self.native.decode_bytes(list(ids))

    @functools.cached_property
    def vocab_size(self) -> int:  # type: ignore[override]
        return max(_regular_vocab(self)[-1][0], max(self.special_tokens.values())) + 1


def _special_id(native: Any, short_name: str) -> int | None:
    if not short_name:
        return None
    try:
        return native.encode_special(short_name)
    except (ValueError, KeyError):
        return None


@functools.cache
def _regular_vocab_cached(family_key: str) -> tuple[tuple[int, bytes], ...]:
    tok = _native(family_key)
    native = tok.native
    top = max(tok.special_tokens.values())
    out: list[tuple[int, bytes]] = []
    misses = 0
    token_id = 0
    # Scan ids upward; stop once well past the last special token with no valid id left.
    while token_id <= top or misses < 4096:
        if token_id not in tok._special_ids:
            try:
                out.append((token_id, native.decode_bytes([token_id])))
                misses = 0
            except ValueError:
                misses += 1
        token_id += 1
    return tuple(out)


def _regular_vocab(tok: NativeTokenizer) -> tuple[tuple[int, bytes], ...]:
    """(id, bytes) of every non-special token, ids ascending (id = BPE rank)."""
    return _regular_vocab_cached(tok.family.key)


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` tokenizer loaded from a `tokenizer.json`."""

    def __init__(self, directory: Path, name: str) -> None:
        from tokenizers import Tokenizer as HFBackend

        self.name = name
        self.directory = directory
        self.hf = HFBackend.from_file(str(directory / "tokenizer.json"))
        self.hf.encode_special_tokens = False
        self._lock = threading.Lock()
        config = _read_json(directory / "tokenizer_config.json")
        self.special_tokens = {
            t.content: i for i, t in self.hf.get_added_tokens_decoder().items() if t.special
        }
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.bos_token_id = self.hf.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_token_id = self.hf.token_to_id(self.eos_token) if self.eos_token else None
        self.adds_bos = bool(config.get("add_bos_token", False)) or _post_processor_adds_bos(
            directory, self.bos_token
        )
        self.vocab_size = max(self.hf.get_vocab(with_added_tokens=True).values()) + 1

    def encode_ordinary(self, text: str) -> list[int]:
        return self._encode([text], plain_specials=True)[0]

    def _encode_parsing_special(self, text: str) -> list[int]:
        return self._encode([text], plain_specials=False)[0]

    def _encode(self, texts: list[str], *, plain_specials: bool) -> list[list[int]]:
        # `encode_special_tokens` is tokenizer-wide state: flip it under a lock.
        with self._lock:
            self.hf.encode_special_tokens = plain_specials
            try:
                return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]
            finally:
                self.hf.encode_special_tokens = False

    def encode_batch(
        self, texts: Iterable[str], add_special_tokens: bool = False, *, parse_special: bool = False
    ) -> list[list[int]]:
        encoded = self._encode(list(texts), plain_specials=not parse_special)
        if add_special_tokens and self.adds_bos and self.bos_token_id is not None:
            return [[self.bos_token_id, *ids] for ids in encoded]
        return encoded

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _post_processor_adds_bos(directory: Path, bos: str | None) -> bool:
    if bos is None:
        return False
    post = _read_json(directory / "tokenizer.json").get("post_processor") or {}
    return bos in json.dumps(post.get("single", post))


def native_family_for(name: str) -> NativeFamily | None:
    """The tml-renderers family serving model `name` (or family key), else None.

    Example:
        >>> native_family_for("Qwen/Qwen3-30B-A3B").key
        'qwen3'
    """
    lowered = name.strip().lower()
    if lowered in NATIVE_FAMILIES:
        return NATIVE_FAMILIES[lowered]
    base = lowered.rsplit("/", 1)[-1]
    for prefix, key in _NAME_PREFIXES:
        if base.startswith(prefix):
            return NATIVE_FAMILIES[key]
    return None


def _hub_repo_for(name: str) -> str | None:
    lowered = name.lower()
    if "llama-3" in lowered or "llama3" in lowered:
        return LLAMA3_TOKENIZER_REPO
    if "/" in name and not Path(name).is_absolute() and name.count("/") == 1:
        return name
    return None


@functools.cache
def _native(family_key: str) -> NativeTokenizer:
    return NativeTokenizer(NATIVE_FAMILIES[family_key])


@functools.cache
def _hf_from_dir(directory: str, name: str) -> HFTokenizer:
    return HFTokenizer(Path(directory), name)


def _hub_tokenizer_dir(repo_id: str, model: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}
    try:
        path = Path(hf_hub_download(repo_id, "tokenizer.json", local_files_only=offline))
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            with contextlib.suppress(Exception):  # optional side files
                hf_hub_download(repo_id, extra, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        raise TokenizerNotFoundError(
            f"No tokenizer for model {model!r}: '{repo_id}' is not in the Hugging Face cache and "
            "the hub is offline (HF_HUB_OFFLINE=1). Provide it with "
            f"`huggingface-cli download {repo_id} tokenizer.json tokenizer_config.json` while "
            "online, or pass a local directory that contains tokenizer.json."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - hub errors vary by version
        raise TokenizerNotFoundError(
            f"No tokenizer for model {model!r}: downloading tokenizer.json from '{repo_id}' "
            f"failed ({type(exc).__name__}: {exc}). Pass a local directory that contains "
            "tokenizer.json instead."
        ) from exc
    return path.parent


def get_tokenizer(name_or_dir: str | Path) -> Tokenizer:
    """The tokenizer of a model name, family key or local directory; loaded once per process.

    Raises TokenizerNotFoundError when none can be found offline.

    Example:
        >>> get_tokenizer("Qwen/Qwen3-8B").eos_token
        '<|im_end|>'
    """
    text = str(name_or_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise TokenizerNotFoundError(
                f"Directory '{path}' has no tokenizer.json; pass a Hugging Face tokenizer "
                "directory or a model name such as 'Qwen/Qwen3-8B'."
            )
        return _hf_from_dir(str(path.resolve()), text)
    family = native_family_for(text)
    if family is not None:
        return _native(family.key)
    repo = _hub_repo_for(text)
    if repo is None:
        raise TokenizerNotFoundError(
            f"No tokenizer for {text!r}: it is neither a model family tml-renderers ships "
            f"({', '.join(sorted(NATIVE_FAMILIES))}), a Hugging Face repo id, nor a directory "
            "with tokenizer.json."
        )
    return _hf_from_dir(str(_hub_tokenizer_dir(repo, text)), text)
