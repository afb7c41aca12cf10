"""Write a Hugging Face tokenizer directory from a tml-renderers native vocabulary.

The native tokenizers are byte-level BPE with tiktoken-style ranks (token id = rank). The export
maps each token's bytes through GPT-2's byte→unicode table, derives merges from the ranks the
way the tiktoken→HF converters do, and adds the family's pre-tokenizer split(s) and special tokens,
so `transformers.AutoTokenizer.from_pretrained(dest)` encodes exactly like the native tokenizer.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from prefect_tinker.errors import TokenizerNotFoundError
from prefect_tinker.models.tokenizers import (
    HFTokenizer,
    NativeTokenizer,
    _regular_vocab,
    get_tokenizer,
    native_family_for,
)

EXPORT_FORMAT = 3
_MARKER = ".prefect-tinker-tokenizer.json"
_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-character table used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _merges_from_ranks(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every (left, right) split of a token whose halves are tokens.

    Ordered as tiktoken→HF converters order them — by the merged token's rank, then by the left
    half's length — which here is simply vocabulary order (`vocab` iterates by rank) and cut
    position, so no sort is needed.
    """
    return [
        (piece[:cut], piece[cut:])
        for piece in vocab
        for cut in range(1, len(piece))
        if piece[:cut] in vocab and piece[cut:] in vocab
    ]


def _byte_level(raw: bytes, table: dict[int, str]) -> str:
    return raw.decode("latin-1").translate(table)


def _tokenizer_json(tok: NativeTokenizer) -> dict[str, Any]:
    table = bytes_to_unicode()  # byte value b is latin-1 character chr(b)
    vocab = {_byte_level(raw, table): token_id for token_id, raw in _regular_vocab(tok)}
    merges = _merges_from_ranks(vocab)
    # Specials also live in the model vocab so that HF keeps their ids (else it appends them).
    vocab.update(tok.special_tokens)
    splits = [
        {"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
        for p in tok.family.split_patterns
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    added = [
        {
            "id": token_id,
            "content": surface,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for surface, token_id in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    ]
    post_processor: dict[str, Any] = {**byte_level, "trim_offsets": False, "use_regex": False}
    if tok.family.adds_bos and tok.bos_token is not None:
        bos = tok.bos_token
        post_processor = {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [tok.bos_token_id], "tokens": [bos]}},
        }
    normalizer = {"type": "NFC"} if tok.family.nfc else None
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [*splits, {**byte_level, "use_regex": False}],
        },
        "post_processor": post_processor,
        "decoder": {**byte_level, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": merges,  # tuples serialize as JSON arrays
        },
    }


def _side_files(tok: NativeTokenizer) -> dict[str, dict[str, Any]]:
    specials = {"bos_token": tok.bos_token, "eos_token": tok.eos_token}
    specials = {k: v for k, v in specials.items() if v is not None}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": tok.family.adds_bos,
        "add_eos_token": False,
        "pad_token": tok.eos_token,
        **specials,
        "added_tokens_decoder": {
            str(token_id): {
                "content": surface,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for surface, token_id in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
        },
    }
    return {
        "tokenizer_config.json": config,
        "special_tokens_map.json": {**specials, "pad_token": tok.eos_token},
    }


def _marker(family_key: str) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "format": EXPORT_FORMAT,
        "family": family_key,
        "tml_renderers": version("tml-renderers"),
    }


def _is_current(dest: Path, marker: dict[str, Any]) -> bool:
    marker_path = dest / _MARKER
    if not (marker_path.is_file() and all((dest / n).is_file() for n in _FILES)):
        return False
    try:
        recorded = json.loads(marker_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return {k: recorded.get(k) for k in marker} == marker


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_hf_tokenizer(model_name: str, dest: Path) -> Path:
    """Write an HF tokenizer dir for `model_name` into `dest` and return `dest`.

    The result loads with `transformers.AutoTokenizer.from_pretrained(dest)` offline and gives
    the same ids as tml-renderers. A second call with the same model and package version returns
    at once. Models served from a `tokenizer.json` (Llama 3, local dirs) have their files copied.

    Example:
        >>> d = export_hf_tokenizer("Qwen/Qwen3-8B", tmp_path / "tok")
        >>> AutoTokenizer.from_pretrained(d).encode("hi") == get_tokenizer("qwen3").encode("hi")
        True
    """
    dest = Path(dest)
    family = native_family_for(model_name)
    if family is not None and _is_current(dest, _marker(family.key)):
        return dest
    tok = get_tokenizer(model_name)
    dest.mkdir(parents=True, exist_ok=True)
    if isinstance(tok, HFTokenizer):
        for name in _FILES:
            source = tok.directory / name
            if source.is_file() and source.resolve() != (dest / name).resolve():
                _write_atomic(dest / name, source.read_text(encoding="utf-8"))
        return dest
    if not isinstance(tok, NativeTokenizer):  # pragma: no cover - two backends only
        raise TokenizerNotFoundError(f"Cannot export the tokenizer of {model_name!r}.")
    _write_atomic(dest / "tokenizer.json", json.dumps(_tokenizer_json(tok), ensure_ascii=False))
    for name, content in _side_files(tok).items():
        _write_atomic(dest / name, json.dumps(content, ensure_ascii=False, indent=2))
    marker = {**_marker(tok.family.key), "vocab_size": tok.vocab_size}
    _write_atomic(dest / _MARKER, json.dumps(marker))
    return dest
