"""Prefect blocks: Tinker credentials, a LoRA configuration, Hugging Face credentials.

`tinker` is imported only when a client is built (it imports torch), so registering or
loading these blocks stays light.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from prefect_tinker.errors import (
    ConfigurationError,
    InvalidTinkerPath,
    MissingCredentialsError,
    UnknownModelError,
)
from prefect_tinker.paths import SCHEME, TinkerPath

if TYPE_CHECKING:
    import tinker
    from tinker import types as tinker_types

LOCAL = "local"
_TINKER_DOCS = "https://tinker-docs.thinkingmachines.ai/"
_TINKER_LOGO = "https://thinkingmachines.ai/favicon.ico"


@dataclass
class _Clients:
    """SDK clients shared by every block with the same endpoint, key and project."""

    service: tinker.ServiceClient
    base_url: str | None
    api_key: SecretStr
    rest: tinker.RestClient | None = None  # built on first use: constructing one connects
    training: dict[str, tinker.TrainingClient] = field(default_factory=dict)


_CLIENTS: dict[tuple[str | None, str, str | None], _Clients] = {}
_CLIENTS_LOCK = threading.Lock()


class TinkerCredentials(Block):
    """Credentials and endpoint for the Tinker training API.

    `base_url` unset means Tinker's production service; `"local"` means the embedded local
    service of `prefect_tinker.local`, started on demand (it needs no API key). Clients are
    built on first use and shared by every block with the same settings in a process.

    Example:
        Load stored Tinker credentials and list the models you can train:
        ```python
        from prefect_tinker import TinkerCredentials

        tinker_credentials = TinkerCredentials.load("BLOCK_NAME")
        rest = tinker_credentials.get_rest_client()
        print(rest.get_server_capabilities().result())
        ```
    """

    _block_type_name = "Tinker Credentials"
    _block_type_slug = "tinker-credentials"
    _logo_url = _TINKER_LOGO
    _documentation_url = _TINKER_DOCS

    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "Tinker API key (starts with 'tml-'). Unset reads the TINKER_API_KEY environment "
            "variable; the local service needs none."
        ),
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "Tinker API URL. Unset means Tinker's production service (or TINKER_BASE_URL); "
            "'local' starts or attaches to the embedded local service."
        ),
        examples=["local", "http://127.0.0.1:8000"],
    )
    project_id: str | None = Field(
        default=None,
        description="Tinker project that new training sessions are attached to.",
    )

    @property
    def is_local(self) -> bool:
        """True when this block points at the embedded local service."""
        return (self.base_url or "").strip().lower() == LOCAL

    def resolve(self) -> tuple[str | None, SecretStr]:
        """The (base_url, api_key) this block connects with; starts the local service if asked.

        Raises:
            MissingCredentialsError: no key in the block nor in TINKER_API_KEY, for a
                non-local service.
        """
        if self.is_local:
            from prefect_tinker.local import ensure_local_service

            url, local_key = ensure_local_service()
            return url, self.api_key or SecretStr(local_key)
        key = self.api_key
        if key is None and os.environ.get("TINKER_API_KEY"):
            key = SecretStr(os.environ["TINKER_API_KEY"])
        if key is None or not key.get_secret_value():
            where = self.base_url or os.environ.get("TINKER_BASE_URL") or "Tinker production"
            raise MissingCredentialsError(
                f"no Tinker API key for {where}: set api_key on the TinkerCredentials block, "
                "export TINKER_API_KEY, or use base_url='local' for the embedded local service."
            )
        return self.base_url or os.environ.get("TINKER_BASE_URL") or None, key

    def _clients(self) -> _Clients:
        url, key = self.resolve()
        digest = hashlib.sha256(key.get_secret_value().encode()).hexdigest()
        cache_key = (url, digest, self.project_id)
        with _CLIENTS_LOCK:
            clients = _CLIENTS.get(cache_key)
            if clients is None:
                import tinker

                service = tinker.ServiceClient(
                    project_id=self.project_id, base_url=url, api_key=key.get_secret_value()
                )
                clients = _CLIENTS[cache_key] = _Clients(service, url, key)
            return clients

    def get_service_client(self) -> tinker.ServiceClient:
        """The `tinker.ServiceClient` for this block, built once per process.

        Example:
            ```python
            service = TinkerCredentials(base_url="local").get_service_client()
            training = service.create_lora_training_client("Qwen/Qwen3-8B", rank=8).result()
            ```
        """
        return self._clients().service

    def get_rest_client(self) -> tinker.RestClient:
        """The `tinker.RestClient` for this block, built once per process (it connects)."""
        clients = self._clients()
        with _CLIENTS_LOCK:
            if clients.rest is None:
                import tinker

                clients.rest = tinker.RestClient(
                    base_url=clients.base_url, api_key=clients.api_key.get_secret_value()
                )
            return clients.rest

    def register_training_client(self, client: tinker.TrainingClient) -> str:
        """Keep `client` open for later tasks in this process; returns its training-run id."""
        run_id = str(client.model_id)
        self._clients().training[run_id] = client
        return run_id

    def get_training_client(self, source: str) -> tinker.TrainingClient:
        """A training client for `source`: a run id opened in this process, or a training
        checkpoint path (`tinker://<run>/weights/<name>`), loaded once per process.

        Raises:
            InvalidTinkerPath: `source` looks like a path but is not a training checkpoint.
            ConfigurationError: `source` is a run id that this process did not open (a
                training client cannot be re-attached to a run; pass a checkpoint path).
        """
        if source.startswith(SCHEME):
            path = TinkerPath.parse(source)
            if path.checkpoint_type != "training":
                raise InvalidTinkerPath(
                    f"{source!r} is a {path.checkpoint_type} checkpoint; weights can only be "
                    "loaded from a training checkpoint 'tinker://<run_id>/weights/<name>'."
                )
        clients = self._clients()
        client = clients.training.get(source)
        if client is not None:
            return client
        if source.startswith(SCHEME):
            client = clients.service.create_training_client_from_state(
                source, user_metadata={"loaded_from": source}
            ).result()
            clients.training[source] = client
            return client
        raise ConfigurationError(
            f"training run {source!r} is not open in this process; open it with "
            "create_training_run in the same flow run, or pass one of its checkpoint "
            "paths ('tinker://<run_id>/weights/<name>') to load it."
        )


class TinkerLoraConfig(Block):
    """A LoRA adapter configuration for Tinker training runs.

    Example:
        Load a stored LoRA configuration and check it against the service:
        ```python
        from prefect_tinker import TinkerCredentials
        from prefect_tinker import TinkerLoraConfig

        lora = TinkerLoraConfig.load("BLOCK_NAME")
        rest = TinkerCredentials.load("tinker").get_rest_client()
        caps = rest.get_server_capabilities()
        lora.check_against("Qwen/Qwen3-8B", caps.result())
        ```
    """

    _block_type_name = "Tinker LoRA Config"
    _block_type_slug = "tinker-lora-config"
    _logo_url = _TINKER_LOGO
    _documentation_url = _TINKER_DOCS

    rank: int = Field(default=32, description="LoRA rank (size of the adapter matrices), >= 1.")
    seed: int | None = Field(
        default=None,
        description="Seed of the adapter's initial weights; set it for reproducible runs.",
    )
    train_mlp: bool = Field(default=True, description="Train LoRA adapters on the MLP layers.")
    train_attn: bool = Field(
        default=True, description="Train LoRA adapters on the attention layers."
    )
    train_unembed: bool = Field(
        default=True, description="Train a LoRA adapter on the unembedding (output) layer."
    )

    @model_validator(mode="after")
    def _check(self) -> TinkerLoraConfig:
        if self.rank < 1:
            raise ConfigurationError(
                f"LoRA rank {self.rank} is not allowed; use an integer >= 1 (e.g. 8, 32)."
            )
        if not (self.train_mlp or self.train_attn or self.train_unembed):
            raise ConfigurationError(
                "LoRA config trains nothing: train_mlp, train_attn and train_unembed are all "
                "False; set at least one of them to True."
            )
        return self

    def check_against(
        self,
        base_model: str,
        capabilities: tinker_types.GetServerCapabilitiesResponse | Iterable[Any],
    ) -> None:
        """Check that the service can train `base_model` with this configuration.

        `capabilities` is `get_server_capabilities()`'s answer, or its list of models.

        Raises:
            UnknownModelError: the service does not offer `base_model` for training.
        """
        models = getattr(capabilities, "supported_models", capabilities)
        trainable = [m.model_name for m in models if m.model_name and m.trainable is not False]
        if base_model in trainable:
            return
        close = difflib.get_close_matches(base_model, trainable, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise UnknownModelError(
            f"base model {base_model!r} is not trainable on this Tinker service; {hint}"
            f"choose one of: {', '.join(trainable) or '(none)'}."
        )

    def sdk_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `ServiceClient.create_lora_training_client`."""
        return {
            "rank": self.rank,
            "seed": self.seed,
            "train_mlp": self.train_mlp,
            "train_attn": self.train_attn,
            "train_unembed": self.train_unembed,
        }


class HuggingFaceCredentials(Block):
    """A Hugging Face Hub token and endpoint, for pushing exported adapters.

    Example:
        Load stored Hugging Face credentials:
        ```python
        from prefect_tinker import HuggingFaceCredentials

        hf_credentials = HuggingFaceCredentials.load("BLOCK_NAME")
        token = hf_credentials.get_token()
        ```
    """

    _block_type_name = "Hugging Face Credentials"
    _block_type_slug = "hugging-face-credentials"
    _logo_url = "https://huggingface.co/front/assets/huggingface_logo-noborder.svg"
    _documentation_url = "https://huggingface.co/docs/hub/security-tokens"

    token: SecretStr | None = Field(
        default=None,
        description="Hugging Face access token with write access. Unset reads HF_TOKEN.",
    )
    endpoint: str | None = Field(
        default=None,
        description="Hub URL; unset means https://huggingface.co (or HF_ENDPOINT).",
        examples=["https://huggingface.co"],
    )

    def get_token(self) -> SecretStr:
        """The token to push with.

        Raises:
            MissingCredentialsError: neither the block nor HF_TOKEN holds a token.
        """
        if self.token is not None and self.token.get_secret_value():
            return self.token
        if os.environ.get("HF_TOKEN"):
            return SecretStr(os.environ["HF_TOKEN"])
        raise MissingCredentialsError(
            "no Hugging Face token: set token on the HuggingFaceCredentials block or export "
            "HF_TOKEN (create one at https://huggingface.co/settings/tokens)."
        )

    def get_endpoint(self) -> str | None:
        """The Hub URL to push to, or None for the default Hub."""
        return self.endpoint or os.environ.get("HF_ENDPOINT") or None


BLOCK_TYPES = (TinkerCredentials, TinkerLoraConfig, HuggingFaceCredentials)
