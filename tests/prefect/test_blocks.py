"""The blocks: Prefect's standard block checks, validation, secrets kept secret."""

from __future__ import annotations

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr, ValidationError

from prefect_tinker import HuggingFaceCredentials, TinkerCredentials, TinkerLoraConfig
from prefect_tinker.errors import MissingCredentialsError, UnknownModelError

NO_INTERNET = "the logo check downloads the logo from the internet, which tests do not reach"


class _OfflineSuite(BlockStandardTestSuite):
    @pytest.mark.skip(reason=NO_INTERNET)
    def test_has_a_valid_image(self, block) -> None:  # type: ignore[override]
        """Skipped: see NO_INTERNET."""


class TestTinkerCredentialsStandard(_OfflineSuite):
    @pytest.fixture
    def block(self):
        return TinkerCredentials


class TestTinkerLoraConfigStandard(_OfflineSuite):
    @pytest.fixture
    def block(self):
        return TinkerLoraConfig


class TestHuggingFaceCredentialsStandard(_OfflineSuite):
    @pytest.fixture
    def block(self):
        return HuggingFaceCredentials


def test_block_types_have_logos_and_slugs() -> None:
    for block in (TinkerCredentials, TinkerLoraConfig, HuggingFaceCredentials):
        assert str(block._logo_url).startswith("https://")
        assert block.get_block_type_slug() == block._block_type_slug


def test_api_key_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = TinkerCredentials(api_key="tml-very-secret", base_url="http://127.0.0.1:9")
    assert "tml-very-secret" not in repr(creds)
    assert "tml-very-secret" not in str(creds.model_dump())
    assert "tml-very-secret" not in creds.model_dump_json()


def test_missing_api_key_names_the_fix() -> None:
    with pytest.raises(MissingCredentialsError, match="TINKER_API_KEY"):
        TinkerCredentials().resolve()


def test_api_key_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-from-env")
    url, key = TinkerCredentials(base_url="http://127.0.0.1:9").resolve()
    assert (url, key.get_secret_value()) == ("http://127.0.0.1:9", "tml-from-env")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rank": 0}, "rank 0"),
        ({"train_mlp": False, "train_attn": False, "train_unembed": False}, "trains nothing"),
    ],
)
def test_lora_config_rejects_bad_values(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TinkerLoraConfig(**fields)


def test_lora_config_checks_model_against_capabilities() -> None:
    from tinker import types

    caps = types.GetServerCapabilitiesResponse(
        supported_models=[types.SupportedModel(model_name="Qwen/Qwen3-8B", trainable=True)]
    )
    TinkerLoraConfig(rank=4).check_against("Qwen/Qwen3-8B", caps)
    with pytest.raises(UnknownModelError, match="did you mean 'Qwen/Qwen3-8B'"):
        TinkerLoraConfig(rank=4).check_against("Qwen/Qwen3-8", caps)


def test_hf_token_from_block_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(MissingCredentialsError, match="HF_TOKEN"):
        HuggingFaceCredentials().get_token()
    assert HuggingFaceCredentials(token=SecretStr("hf_x")).get_token().get_secret_value() == "hf_x"
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert HuggingFaceCredentials().get_token().get_secret_value() == "hf_env"


def test_training_client_sources_are_checked() -> None:
    from prefect_tinker.errors import ConfigurationError, InvalidTinkerPath

    creds = TinkerCredentials(api_key="tml-x", base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="not open in this process"):
        creds.get_training_client("some-session:train:0")
    with pytest.raises(InvalidTinkerPath, match="sampler checkpoint"):
        creds.get_training_client("tinker://some-session:train:0/sampler_weights/final")


def test_clients_are_cached_per_settings(local_tinker) -> None:
    def creds(key: str) -> TinkerCredentials:
        return TinkerCredentials(api_key=key, base_url=local_tinker.base_url)

    alice, bob = local_tinker.api_key, "tml-test-bob"
    assert creds(alice).get_service_client() is creds(alice).get_service_client()
    assert creds(alice).get_rest_client() is creds(alice).get_rest_client()
    assert creds(alice).get_service_client() is not creds(bob).get_service_client()
