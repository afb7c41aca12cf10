"""Tokenizers: one interface over tml-renderers' native ones and HF tokenizer.json files."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import pytest

from prefect_tinker.errors import TokenizerNotFoundError
from prefect_tinker.models import export_hf_tokenizer, get_tokenizer
from prefect_tinker.models.tokenizers import LLAMA3_TOKENIZER_REPO, HFTokenizer, NativeTokenizer

VARIED_TEXTS = [
    "Hello world!",
    "  lots   of\n\n\n spaces\t\ttabs  ",
    "12345678901 3.14159 1,000,000 0x1F",
    "def f(x):\n    return x**2  # square\n\n\nclass A:\n\tpass\n",
    "Ünïcödé 日本語のテキスト 中文 emoji 🤖🎉 한국어 Привет мир",
    "I'm sure they'LL say it's fine, WE'VE DONE it",
    "e\u0301 \u2329 \u00a0 ﬁ Ⅻ ①② ١٢٣",
    "https://example.com/a/b?c=d&e=f",
    "\r\n\r\n  \t\n",
    "a" * 300,
]


def test_model_names_and_family_keys_share_one_cached_native_tokenizer() -> None:
    tok = get_tokenizer("Qwen/Qwen3-8B")
    assert isinstance(tok, NativeTokenizer)
    assert get_tokenizer("qwen3") is tok
    assert get_tokenizer("Qwen/Qwen3-30B-A3B-Instruct-2507") is tok


def test_qwen3_facts() -> None:
    tok = get_tokenizer("Qwen/Qwen3-8B")
    assert tok.vocab_size == 151669
    assert tok.eos_token == "<|im_end|>"
    assert tok.eos_token_id == 151645
    assert tok.bos_token_id is None
    assert tok.special_tokens["<|im_start|>"] == 151644
    assert tok.encode("hi", add_special_tokens=True) == tok.encode("hi")


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_round_trip(text: str) -> None:
    tok = get_tokenizer("Qwen/Qwen3-8B")
    # Qwen normalizes to NFC before tokenizing.
    assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFC", text)


def test_special_token_text_is_plain_unless_parsed() -> None:
    tok = get_tokenizer("Qwen/Qwen3-8B")
    text = "<|im_start|>user\nhi<|im_end|>"
    plain = tok.encode(text)
    parsed = tok.encode(text, parse_special=True)
    assert 151644 not in plain
    assert parsed[0] == 151644 and parsed[-1] == 151645
    assert tok.decode(parsed) == text
    assert tok.decode(parsed, skip_special_tokens=True) == "user\nhi"
    assert tok.encode_batch([text, "x"], parse_special=True) == [parsed, tok.encode("x")]


def test_families_with_bos_prepend_it_on_request() -> None:
    tok = get_tokenizer("deepseek-ai/DeepSeek-V3.1")
    assert tok.bos_token_id == 0
    assert tok.encode("hi", add_special_tokens=True) == [0, *tok.encode("hi")]


def test_hf_export_encodes_exactly_like_native(qwen3_hf_dir: Path) -> None:
    from transformers import AutoTokenizer

    native = get_tokenizer("Qwen/Qwen3-8B")
    hf = AutoTokenizer.from_pretrained(qwen3_hf_dir)
    for text in [*VARIED_TEXTS, "<|im_start|>assistant\n<think>\n</think>ok<|im_end|>"]:
        ids = native.encode(text, parse_special=True)
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == native.decode(ids)
    assert len(hf) == native.vocab_size
    assert hf.eos_token == "<|im_end|>"


def test_hf_export_second_call_is_instant(qwen3_hf_dir: Path) -> None:
    before = (qwen3_hf_dir / "tokenizer.json").stat().st_mtime_ns
    started = time.perf_counter()
    assert export_hf_tokenizer("Qwen/Qwen3-8B", qwen3_hf_dir) == qwen3_hf_dir
    assert time.perf_counter() - started < 0.5
    assert (qwen3_hf_dir / "tokenizer.json").stat().st_mtime_ns == before


def test_local_directory_loads_through_hf_backend(qwen3_hf_dir: Path) -> None:
    tok = get_tokenizer(qwen3_hf_dir)
    assert isinstance(tok, HFTokenizer)
    native = get_tokenizer("qwen3")
    text = "Hello <|im_end|> world 123"
    assert tok.encode(text) == native.encode(text)
    assert tok.encode(text, parse_special=True) == native.encode(text, parse_special=True)
    assert tok.encode_batch([text], parse_special=True) == [native.encode(text, parse_special=True)]
    assert tok.eos_token_id == native.eos_token_id
    assert tok.vocab_size == native.vocab_size


def _write_tiny_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({"[UNK]": 0, "hello": 1, "llama": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.add_special_tokens(["<|begin_of_text|>", "<|eot_id|>"])
    directory.mkdir(parents=True)
    tok.save(str(directory / "tokenizer.json"))
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def test_llama3_resolves_to_the_public_mirror_in_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    repo_dir = tmp_path / ("models--" + LLAMA3_TOKENIZER_REPO.replace("/", "--"))
    _write_tiny_tokenizer(repo_dir / "snapshots" / "abc123")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    tok = get_tokenizer("meta-llama/Llama-3.1-8B-Instruct")
    assert isinstance(tok, HFTokenizer)
    assert tok.encode("hello llama") == [1, 2]
    assert tok.eos_token == "<|eot_id|>" and tok.eos_token_id == 4
    assert tok.vocab_size == 5


def test_missing_offline_tokenizer_names_model_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(TokenizerNotFoundError, match="meta-llama/Llama-3.3-70B-Instruct") as info:
        get_tokenizer("meta-llama/Llama-3.3-70B-Instruct")
    assert LLAMA3_TOKENIZER_REPO in str(info.value)
    assert "tokenizer.json" in str(info.value)


def test_directory_without_tokenizer_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenizerNotFoundError, match="no tokenizer.json"):
        get_tokenizer(tmp_path)


def test_unknown_name_is_refused() -> None:
    with pytest.raises(TokenizerNotFoundError, match="not-a-model"):
        get_tokenizer("not-a-model")
