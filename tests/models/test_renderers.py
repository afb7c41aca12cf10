"""Renderers: tokens and loss weights of conversations, prompts and stops for sampling."""

from __future__ import annotations

import pytest
from tml_renderers import chat, renderers

from prefect_tinker.errors import ConfigurationError, DatasetError
from prefect_tinker.models import get_renderer, get_tokenizer
from prefect_tinker.models.renderers import RENDERERS

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]

# tml-renderers' own rendering of CONVERSATION with Qwen3 (thinking on), pinned.
QWEN3_TOKENS = [
    151644, 8948, 198, 3430, 9814, 13, 151645, 198, 151644, 872, 198, 13048, 1052, 151645, 198,
    151644, 77091, 198, 9707, 0, 2585, 646, 358, 1492, 30, 151645, 198, 151644, 872, 198, 17,
    10, 17, 30, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271, 19, 151645,
]  # fmt: skip


def _trained_text(renderer, seq) -> str:
    pairs = zip(seq.tokens, seq.weights, strict=True)
    return renderer.tokenizer.decode([t for t, w in pairs if w > 0])


def test_qwen3_tokens_equal_tml_renderers_own_rendering() -> None:
    [seq] = get_renderer("qwen3", "Qwen/Qwen3-8B").render(CONVERSATION)
    native = renderers.Qwen3().render_for_sft(chat.MessageList.from_oss_messages(CONVERSATION))
    native_tokens = [t for span in native[-1].input_token_spans for t in span.span.tokens]
    assert seq.tokens == native_tokens == QWEN3_TOKENS
    assert seq.weights == native[-1].per_token_loss_weight_unshifted


def test_last_assistant_weights_only_the_last_assistant_tokens() -> None:
    renderer = get_renderer(None, "Qwen/Qwen3-8B")
    [seq] = renderer.render(CONVERSATION, train_on="last_assistant")
    assert set(seq.weights) == {0.0, 1.0}
    first_trained = seq.weights.index(1.0)
    assert all(w == 1.0 for w in seq.weights[first_trained:])
    assert _trained_text(renderer, seq) == "<think>\n\n</think>\n\n4<|im_end|>"


@pytest.mark.parametrize("name", ["deepseekv3", "glm53"])
def test_last_assistant_on_single_sequence_renderers(name: str) -> None:
    renderer = get_renderer(name, "any")
    [seq] = renderer.render(CONVERSATION)
    assert "Hello" not in _trained_text(renderer, seq)
    assert _trained_text(renderer, seq).startswith(("4", "</think>4"))
    [all_turns] = renderer.render(CONVERSATION, train_on="all_assistant")
    assert "Hello! How can I help?" in _trained_text(renderer, all_turns)


def test_all_assistant_gives_one_sequence_per_turn_when_history_differs() -> None:
    renderer = get_renderer("qwen3", "Qwen/Qwen3-8B")
    first, second = renderer.render(CONVERSATION, train_on="all_assistant")
    assert _trained_text(renderer, first).endswith("Hello! How can I help?<|im_end|>")
    assert _trained_text(renderer, second).endswith("4<|im_end|>")


def test_train_on_all_and_truncation() -> None:
    renderer = get_renderer("qwen3", "Qwen/Qwen3-8B")
    [seq] = renderer.render(CONVERSATION, train_on="all", max_length=10)
    assert seq.tokens == QWEN3_TOKENS[:10] and seq.weights == [1.0] * 10


def test_thinking_can_be_disabled() -> None:
    renderer = get_renderer("qwen3_disable_thinking", "Qwen/Qwen3-8B")
    [seq] = renderer.render(CONVERSATION)
    assert _trained_text(renderer, seq) == "4<|im_end|>"


# One renderer per tokenizer family (each family's tokenizer takes ~1 s to load).
@pytest.mark.parametrize(
    "name", ["qwen3_instruct", "deepseek_r1", "nemotron3", "kimi_k2", "gpt_oss_low_reasoning"]
)
def test_native_renderers_render_and_weight_only_the_answer(name: str) -> None:
    assert name in RENDERERS
    renderer = get_renderer(name, "any")
    [seq] = renderer.render(CONVERSATION)
    assert len(seq.tokens) == len(seq.weights) and seq.trained_tokens > 0
    assert "4" in _trained_text(renderer, seq)
    assert "Hello" not in _trained_text(renderer, seq)
    assert renderer.stop_sequences()


def test_generation_prompt_stop_and_parse() -> None:
    renderer = get_renderer(None, "Qwen/Qwen3-8B")
    prompt = renderer.generation_prompt(CONVERSATION[:-1])
    assert renderer.tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert prompt == QWEN3_TOKENS[: len(prompt)]
    assert renderer.stop_sequences() == [151645]
    sampled = renderer.tokenizer.encode("Four.") + [151645]
    assert renderer.parse_response(sampled)["content"] == "Four."


def test_role_colon_for_base_models() -> None:
    renderer = get_renderer(None, "Qwen/Qwen3-8B-Base")
    assert renderer.name == "role_colon"
    [seq] = renderer.render(CONVERSATION)
    text = renderer.tokenizer.decode(seq.tokens)
    assert text.startswith("System: Be brief.\n\nUser: Hi there\n\nAssistant: Hello!")
    assert _trained_text(renderer, seq) == " 4\n\n"
    [both] = renderer.render(CONVERSATION, train_on="all_assistant")
    assert _trained_text(renderer, both) == " Hello! How can I help?\n\n 4\n\n"
    prompt = renderer.tokenizer.decode(renderer.generation_prompt(CONVERSATION[:2]))
    assert prompt.endswith("User: Hi there\n\nAssistant:")
    assert renderer.stop_sequences() == ["\n\nUser:"]
    assert renderer.parse_response(renderer.tokenizer.encode(" 4\n\nUser: more"))["content"] == "4"


def test_llama3_renderer_needs_llama3_special_tokens() -> None:
    from prefect_tinker.models.renderers import Llama3Renderer

    with pytest.raises(ConfigurationError, match="Llama 3 tokenizer"):
        Llama3Renderer(get_tokenizer("qwen3"))


def _byte_level_llama3_tokenizer(directory) -> None:
    """A byte-level tokenizer (no merges) carrying Llama 3's chat special tokens."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    from prefect_tinker.models.hf_export import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    tok = Tokenizer(BPE(vocab, []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens(specials)
    directory.mkdir()
    tok.save(str(directory / "tokenizer.json"))


def test_llama3_renderer_format_over_an_hf_tokenizer(tmp_path) -> None:
    from prefect_tinker.models.renderers import Llama3Renderer

    _byte_level_llama3_tokenizer(tmp_path / "llama3")
    tok = get_tokenizer(tmp_path / "llama3")
    renderer = Llama3Renderer(tok)
    [seq] = renderer.render(CONVERSATION[1:3])
    text = tok.decode(seq.tokens)
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
    )
    assert _trained_text(renderer, seq) == "Hello! How can I help?<|eot_id|>"
    prompt = tok.decode(renderer.generation_prompt(CONVERSATION[1:2]))
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert renderer.stop_sequences() == [tok.special_tokens["<|eot_id|>"]]


def test_errors_name_the_problem() -> None:
    renderer = get_renderer(None, "Qwen/Qwen3-8B")
    with pytest.raises(DatasetError, match="no assistant message"):
        renderer.render([{"role": "user", "content": "hi"}])
    with pytest.raises(DatasetError, match="wizard"):
        renderer.render([{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}])
    with pytest.raises(ConfigurationError, match="train_on"):
        renderer.render(CONVERSATION, train_on="everything")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Unknown renderer 'nope'"):
        get_renderer("nope", "Qwen/Qwen3-8B")


@pytest.mark.parametrize(
    "name", ["qwen3", "qwen3_disable_thinking", "qwen3_instruct", "deepseekv3"]
)
def test_one_sequence_fast_path_equals_the_full_rendering(name: str) -> None:
    """Earlier assistant turns get loss weight 0 before rendering (so per-turn renderers emit
    one sequence); the result must equal the last example of the full rendering, with weights
    kept only from the last assistant turn's prompt on."""
    three_turns = [
        *CONVERSATION,
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    renderer = get_renderer(name, "Qwen/Qwen3-8B")
    [fast] = renderer.render(three_turns)
    full = renderer.native.render_for_sft(chat.MessageList.from_oss_messages(three_turns))[-1]
    tokens = [t for span in full.input_token_spans for t in span.span.tokens]
    prompt = renderer.generation_prompt(three_turns[:-1])
    assert fast.tokens == tokens and tokens[: len(prompt)] == prompt
    expected = [0.0] * len(prompt) + list(full.per_token_loss_weight_unshifted[len(prompt) :])
    assert fast.weights == expected
