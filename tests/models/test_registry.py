"""The model registry: the static lineup and its merge with a live service."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from prefect_tinker.errors import UnknownModelError
from prefect_tinker.models import get_model, list_models
from prefect_tinker.models.registry import live_models


def test_lineup_facts() -> None:
    qwen = get_model("Qwen/Qwen3-30B-A3B")
    assert qwen.organization == "Qwen" and qwen.is_moe and qwen.is_chat
    assert (qwen.total_params_b, qwen.active_params_b) == (30, 3)
    assert qwen.architecture.num_experts == 128
    assert qwen.recommended_renderer == "qwen3"
    assert get_model("Qwen/Qwen3-8B-Base").renderers == ("role_colon",)
    assert get_model("moonshotai/Kimi-K2-Thinking").total_params_b == 1000
    assert get_model("Qwen/Qwen3-VL-30B-A3B-Instruct").vision
    assert not get_model("meta-llama/Llama-3.1-8B").is_moe


def test_every_model_has_a_renderer_tokenizer_and_shapes() -> None:
    for spec in list_models():
        assert spec.renderers and spec.tokenizer and spec.context_length > 0
        assert spec.architecture.hidden_size > 0 and spec.architecture.vocab_size > 0
        assert spec.to_dict()["name"] == spec.name


def test_lookup_ignores_case() -> None:
    assert get_model("qwen/qwen3-8b").name == "Qwen/Qwen3-8B"


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="Qwen/Qwen3-8B") as info:
        get_model("Qwen/Qwen3-8b-instruct")
    assert "models list" in str(info.value)


class _FakeRest:
    """The one RestClient call the merge uses, answering like the SDK does."""

    def __init__(self, models: list[dict]) -> None:
        self._models = [SimpleNamespace(**m) for m in models]

    def get_server_capabilities(self) -> SimpleNamespace:
        result = SimpleNamespace(supported_models=self._models)
        return SimpleNamespace(result=lambda: result)


def test_live_merge_keeps_service_order_and_marks_unserved() -> None:
    rest = _FakeRest(
        [
            {"model_name": "Qwen/Qwen3-8B", "max_context_length": 4096, "trainable": True,
             "sampleable": True},
            {"model_name": "local/tiny-test", "max_context_length": 512, "trainable": True,
             "sampleable": False},
        ]
    )  # fmt: skip
    merged = live_models(rest)
    assert [m.name for m in merged[:2]] == ["Qwen/Qwen3-8B", "local/tiny-test"]
    assert merged[0].spec is get_model("Qwen/Qwen3-8B") and merged[0].max_context_length == 4096
    assert merged[1].spec is None and merged[1].sampleable is False
    unserved = {m.name: m for m in merged[2:]}
    assert "Qwen/Qwen3-8B" not in unserved
    assert unserved["meta-llama/Llama-3.1-8B"].served is False
    assert len(merged) == len(list_models()) + 1


def test_live_merge_against_the_local_service(local_tinker, service_client) -> None:
    """The official SDK's capabilities call, through a ServiceClient and a RestClient."""
    import tinker

    from_service = live_models(service_client)
    served = [m for m in from_service if m.served]
    assert served and all(m.trainable is not None for m in served)
    assert {m.name for m in served} <= {m.name for m in from_service}
    rest = tinker.RestClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    assert [m.name for m in live_models(rest)] == [m.name for m in from_service]


def test_hf_config_view_of_the_architecture() -> None:
    config = get_model("Qwen/Qwen3-8B").hf_config
    assert config == {
        "hidden_size": 4096,
        "vocab_size": 151936,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 12288,
    }
    from prefect_tinker.models.hyperparams import architecture_from_config

    assert architecture_from_config(config) == get_model("Qwen/Qwen3-8B").architecture
