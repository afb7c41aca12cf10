"""Tasks for training on Tinker: capabilities, training runs, the training loop, saving weights.

Each task does one remote job, retries only transient faults, and returns plain values
(run ids, tinker paths, metrics).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_tinker.blocks import TinkerCredentials, TinkerLoraConfig
from prefect_tinker.errors import ConfigurationError
from prefect_tinker.paths import TinkerPath, check_checkpoint_name
from prefect_tinker.retries import RETRY_OPTIONS, typed_sdk_errors
from prefect_tinker.tasks.progress import ProgressReporter, emit_checkpoint_saved
from prefect_tinker.tasks.results import ModelCapability, TrainSummary

if TYPE_CHECKING:
    from prefect.context import TaskRunContext

    from prefect_tinker.training import BatchSource, CheckpointInfo, StepMetrics, TrainConfig


def endpoint_key(credentials: TinkerCredentials) -> str:
    """What identifies the service for cache keys (never the API key itself)."""
    if credentials.is_local:
        import os

        return f"local:{os.environ.get('PREFECT_TINKER_HOME', '~/.prefect-tinker')}"
    return credentials.base_url or "production"


def checkpoint_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Cache key of a task that is a pure function of a training checkpoint path.

    Sources that are run ids (open clients, whose weights keep changing) are not cached.
    """
    source = parameters.get("source") or parameters.get("tinker_path")
    if not isinstance(source, str) or not source.startswith("tinker://"):
        return None
    parts = [context.task.name, endpoint_key(parameters["credentials"]), source]
    parts += [
        f"{k}={parameters[k]!r}"
        for k in sorted(parameters)
        if k not in {"credentials", "source", "tinker_path"}
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@task(name="Get Tinker server capabilities", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the server capabilities")
def get_server_capabilities(credentials: TinkerCredentials) -> list[ModelCapability]:
    """The base models the service offers, with their context length and what they allow.

    Example:
        ```python
        models = get_server_capabilities(TinkerCredentials.load("BLOCK_NAME"))
        print([m.model_name for m in models if m.trainable])
        ```
    """
    response = credentials.get_rest_client().get_server_capabilities().result()
    return [
        ModelCapability(
            model_name=m.model_name,
            max_context_length=m.max_context_length,
            trainable=m.trainable,
            sampleable=m.sampleable,
        )
        for m in response.supported_models
        if m.model_name
    ]


@task(name="Create Tinker training run", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the new training run of", "base_model")
def create_training_run(
    credentials: TinkerCredentials,
    base_model: str | None = None,
    lora: TinkerLoraConfig | None = None,
    from_checkpoint: str | None = None,
    with_optimizer: bool = True,
    user_metadata: dict[str, str] | None = None,
) -> str:
    """Start a training run and return its id; the client stays open in this process.

    Fresh: give `base_model` (and a `lora` config, default rank 32). From a checkpoint: give
    `from_checkpoint` (`tinker://<run>/weights/<name>`), with or without its optimizer state.
    Later tasks in the same process (`save_state`, `save_weights_for_sampler`, ...) take the
    returned id.

    Example:
        ```python
        run_id = create_training_run(creds, base_model="Qwen/Qwen3-8B", lora=TinkerLoraConfig())
        path = save_state(creds, run_id, "init")
        ```
    """
    service = credentials.get_service_client()
    if from_checkpoint is not None:
        path = str(TinkerPath.parse(from_checkpoint))
        create = (
            service.create_training_client_from_state_with_optimizer
            if with_optimizer
            else service.create_training_client_from_state
        )
        client = create(path, user_metadata=user_metadata).result()
    elif base_model:
        lora = lora or TinkerLoraConfig()
        client = service.create_lora_training_client(
            base_model=base_model, user_metadata=user_metadata, **lora.sdk_kwargs()
        ).result()
    else:
        raise ConfigurationError(
            "create_training_run needs base_model (a fresh run) or from_checkpoint "
            "('tinker://<run_id>/weights/<name>'); neither was given."
        )
    return credentials.register_training_client(client)


@task(name="Train LoRA on Tinker", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the training run")
def train(
    credentials: TinkerCredentials, dataset: BatchSource, config: TrainConfig
) -> TrainSummary:
    """Run the whole pipelined training loop as one task (never one task per step).

    Resumes the run_key's newest checkpoint on the service (so a retry or a re-run continues
    exactly where the last confirmed checkpoint left off) and returns at once when the run
    already finished. Progress is shown as a progress artifact, each step's metrics are
    logged, and every checkpoint emits a `tinker.checkpoint.saved` event.

    Example:
        ```python
        summary = train(creds, load_dataset("chat.jsonl", renderer=r, max_length=512), config)
        print(summary.final_checkpoint)
        ```
    """
    from prefect_tinker import training

    logger = get_run_logger()
    run_key = config.resolved_run_key(dataset.fingerprint)
    total = training.BatchPlan.build(dataset, config).total_steps

    with ProgressReporter(
        total=total,
        key=_artifact_key("training", run_key),
        description=f"Training {run_key} ({config.base_model}), {total} steps",
    ) as progress:

        def on_step(m: StepMetrics) -> None:
            logger.info(
                "step %d/%d loss %.4f lr %.3g tokens %d (%.2fs)",
                m["step"],
                total,
                m["loss"],
                m["learning_rate"],
                m["tokens"],
                m["time_s"],
            )
            progress.update(m["step"], f"step {m['step']}/{total}, loss {m['loss']:.4f}")

        def on_checkpoint(c: CheckpointInfo) -> None:
            logger.info("checkpoint %s saved at step %d (loss %.4f)", c.path, c.step, c.loss)
            emit_checkpoint_saved(c.path, c.step, c.loss, run_key, final=c.final)

        result = training.train(
            credentials.get_service_client(),
            dataset,
            config,
            on_step=on_step,
            on_checkpoint=on_checkpoint,
            rest=credentials.get_rest_client(),
        )
        progress.update(result.final_step, f"done: {result.final_state_path}")
    if result.steps_run == 0:
        logger.info("run %s had already finished: %s", run_key, result.final_state_path)
    return TrainSummary(
        run_key=result.run_key,
        run_id=result.run_id,
        final_checkpoint=result.final_state_path,
        final_step=result.final_step,
        steps_run=result.steps_run,
        resumed_from=result.resumed_from,
        metrics=[{k: float(v) for k, v in m.items()} for m in result.metrics],
    )


@task(name="Save Tinker training state", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("training run", "run_id")
def save_state(
    credentials: TinkerCredentials,
    run_id: str,
    name: str,
    ttl_seconds: int | None = None,
    user_metadata: dict[str, str] | None = None,
) -> str:
    """Save weights + optimizer state of a run opened in this process; returns the tinker path."""
    client = credentials.get_training_client(run_id)
    response = client.save_state(
        check_checkpoint_name(name), ttl_seconds=ttl_seconds, user_metadata=user_metadata
    ).result()
    return response.path


@task(
    name="Save Tinker sampler weights",
    cache_key_fn=checkpoint_cache_key,
    persist_result=True,
    **RETRY_OPTIONS,
)
@typed_sdk_errors("sampler weights of", "source")
def save_weights_for_sampler(
    credentials: TinkerCredentials, source: str, name: str, ttl_seconds: int | None = None
) -> str:
    """Save sampler weights of `source` (a run id opened here, or a training checkpoint path).

    Cached on the checkpoint path: saving the same checkpoint again returns the same path.
    """
    client = credentials.get_training_client(source)
    response = client.save_weights_for_sampler(
        check_checkpoint_name(name), ttl_seconds=ttl_seconds
    ).result()
    return response.path


@task(
    name="Save Tinker external weights",
    cache_key_fn=checkpoint_cache_key,
    persist_result=True,
    **RETRY_OPTIONS,
)
@typed_sdk_errors("external weights of", "source")
def save_weights_external(
    credentials: TinkerCredentials,
    source: str,
    name: str,
    ttl_seconds: int | None = None,
    age_recipients: list[str] | None = None,
) -> str:
    """Save `source` as a downloadable PEFT adapter (`external_weights`); returns its path.

    `age_recipients` encrypts every file to those age / SSH public keys.
    Cached on the checkpoint path.
    """
    client = credentials.get_training_client(source)
    response = client.save_weights_external(
        check_checkpoint_name(name),
        ttl_seconds=ttl_seconds,
        age_encryption_recipients=age_recipients or None,
    ).result()
    return response.path


def _artifact_key(prefix: str, run_key: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_key.lower()).strip("-")
    return f"{prefix}-{slug}"[:100]
