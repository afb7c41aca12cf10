"""`sft_pipeline`: validate → train (resumable) → evaluate → export, as one Prefect flow.

Every input is checked before the first training request. The training task resumes the
run_key's newest checkpoint on the service, so a crashed, retried or re-run pipeline repeats no
optimizer step, and a finished one returns its paths without sending training requests.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_tinker.blocks import HuggingFaceCredentials, TinkerCredentials, TinkerLoraConfig
from prefect_tinker.errors import ConfigurationError, DatasetError
from prefect_tinker.tasks.checkpoints import list_checkpoints
from prefect_tinker.tasks.evaluation import evaluate
from prefect_tinker.tasks.training import (
    get_server_capabilities,
    save_weights_external,
    save_weights_for_sampler,
    train,
)

TrainOn = Literal["last_assistant", "all_assistant", "all"]
Schedule = Literal["constant", "linear", "cosine"]


class CheckpointPolicy(BaseModel):
    """How often to save resumable checkpoints and how long to keep them."""

    model_config = ConfigDict(extra="forbid")

    every: int | None = Field(
        20, ge=1, description="Save a resumable checkpoint every N steps (None: only at the end)."
    )
    ttl_seconds: int | None = Field(
        7 * 24 * 3600, description="TTL of intermediate checkpoints (None: never expire)."
    )
    final_ttl_seconds: int | None = Field(
        None, description="TTL of the final checkpoint (None: never expires)."
    )


class EvalOptions(BaseModel):
    """The held-out split scored after training."""

    model_config = ConfigDict(extra="forbid")

    holdout_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of examples held out for evaluation (0: none)."
    )
    batch_size: int = Field(64, ge=1, description="Datums per forward request.")


class ExportOptions(BaseModel):
    """What to produce from the final checkpoint."""

    model_config = ConfigDict(extra="forbid")

    sampler_weights: bool = Field(True, description="Save sampler weights (for sampling).")
    external_weights: bool = Field(True, description="Save a downloadable PEFT adapter.")
    download_dir: str | None = Field(
        None,
        description="Where to download the adapter; unset: $PREFECT_TINKER_HOME/adapters/...",
    )
    download: bool = Field(True, description="Download the adapter and validate it.")
    publish: bool = Field(False, description="Publish the adapter on Tinker (public).")
    hf_repo_id: str | None = Field(None, description="Push the adapter to this Hub repo.")
    hf_credentials: HuggingFaceCredentials | None = Field(
        None, description="Hub token for hf_repo_id (default: HF_TOKEN)."
    )
    ttl_seconds: int | None = Field(
        None, description="TTL of the exported checkpoints (None: never expire)."
    )


class SftResult(BaseModel):
    """What `sft_pipeline` produced; every path can be passed to the tasks and the CLI."""

    run_key: str
    run_id: str
    base_model: str
    final_checkpoint: str
    final_step: int
    steps_run: int
    resumed_from: str | None = None
    sampler_path: str | None = None
    external_path: str | None = None
    adapter_dir: str | None = None
    eval_nll: float | None = None
    first_loss: float | None = None
    final_loss: float | None = None
    metrics: list[dict[str, float]] = Field(default_factory=list)
    export: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """Everything validated, ready to train."""

    dataset: Any
    config: Any


@flow(name="tinker-sft-pipeline", validate_parameters=True)
def sft_pipeline(
    base_model: str,
    dataset: str,
    credentials: TinkerCredentials | None = None,
    lora: TinkerLoraConfig | None = None,
    renderer: str | None = None,
    max_length: int = 2048,
    train_on: TrainOn = "all_assistant",
    learning_rate: float | None = None,
    lr_schedule: Schedule = "linear",
    batch_size: int = 8,
    num_epochs: int = 1,
    max_steps: int | None = None,
    checkpoints: CheckpointPolicy = CheckpointPolicy(),
    evaluation: EvalOptions = EvalOptions(),
    export: ExportOptions = ExportOptions(),
    run_key: str | None = None,
    seed: int = 0,
    pipeline_depth: int = 2,
) -> SftResult:
    """Fine-tune a LoRA adapter on a chat JSONL dataset, then evaluate and export it.

    Args:
        base_model: a model the service can train, e.g. "Qwen/Qwen3-8B".
        dataset: path to a chat JSONL file (one {"messages": [...]} per line).
        credentials: Tinker credentials block; unset runs on the embedded local service.
        lora: LoRA configuration block (default rank 32, seed 0).
        renderer: chat template; unset uses the model's recommended renderer.
        learning_rate: unset derives it from the model (`prefect_tinker.models.get_lr`).
        run_key: names the run for resume and caching; unset derives it from config + data.

    Returns:
        `SftResult` with the run id, final checkpoint, sampler / external paths, the local
        adapter directory, the held-out NLL and the per-step metrics.

    Example:
        ```python
        from prefect_tinker import sft_pipeline

        result = sft_pipeline(base_model="Qwen/Qwen3-8B", dataset="chat.jsonl", max_steps=20)
        print(result.adapter_dir)
        ```
    """
    logger = get_run_logger()
    credentials = credentials or TinkerCredentials(base_url="local")
    lora = lora or TinkerLoraConfig(rank=32, seed=0)

    plan = _validate(
        credentials,
        base_model,
        lora,
        dataset,
        renderer=renderer,
        max_length=max_length,
        train_on=train_on,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        batch_size=batch_size,
        num_epochs=num_epochs,
        max_steps=max_steps,
        checkpoints=checkpoints,
        holdout_fraction=evaluation.holdout_fraction,
        run_key=run_key,
        seed=seed,
        pipeline_depth=pipeline_depth,
    )
    # quote(): Prefect would otherwise walk every datum looking for futures.
    summary = train(credentials, quote(plan.dataset), plan.config)
    result = SftResult(
        run_key=summary.run_key,
        run_id=summary.run_id,
        base_model=base_model,
        final_checkpoint=summary.final_checkpoint,
        final_step=summary.final_step,
        steps_run=summary.steps_run,
        resumed_from=summary.resumed_from,
        first_loss=summary.first_loss,
        final_loss=summary.last_loss,
        metrics=summary.metrics,
    )

    holdout = list(plan.dataset.holdout)
    if holdout:
        result.eval_nll = evaluate(
            credentials,
            summary.final_checkpoint,
            quote(holdout),
            data_fingerprint=(
                f"{plan.dataset.fingerprint}:holdout={evaluation.holdout_fraction}:seed={seed}"
            ),
            batch_size=evaluation.batch_size,
        )
        logger.info("held-out NLL of %s: %.4f", summary.final_checkpoint, result.eval_nll)
    elif evaluation.holdout_fraction > 0:
        logger.warning("the holdout split is empty; skipping evaluation (add examples)")

    _export(credentials, summary.final_checkpoint, export, result)
    logger.info(
        "run %s done: %s (adapter: %s)",
        result.run_key,
        result.final_checkpoint,
        result.adapter_dir or result.external_path,
    )
    return result


def _validate(
    credentials: TinkerCredentials,
    base_model: str,
    lora: TinkerLoraConfig,
    dataset_path: str,
    *,
    renderer: str | None,
    max_length: int,
    train_on: str,
    learning_rate: float | None,
    lr_schedule: str,
    batch_size: int,
    num_epochs: int,
    max_steps: int | None,
    checkpoints: CheckpointPolicy,
    holdout_fraction: float,
    run_key: str | None,
    seed: int,
    pipeline_depth: int,
) -> _Plan:
    """Check every input before training; raise typed errors naming the value and the fix."""
    from prefect_tinker.training import BatchPlan, LoraSettings, TrainConfig

    credentials.resolve()  # MissingCredentialsError before anything else
    path = Path(dataset_path).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"dataset {dataset_path!r} does not exist or is not a file; pass the path of a chat "
            'JSONL file (one {"messages": [...]} object per line).'
        )
    lora.check_against(base_model, get_server_capabilities(credentials))

    from prefect_tinker.data import load_dataset
    from prefect_tinker.models import get_renderer

    chat_renderer = get_renderer(renderer, base_model)
    if learning_rate is None:
        learning_rate = _default_lr(base_model)
    data = load_dataset(
        path,
        renderer=chat_renderer,
        max_length=max_length,
        train_on=train_on,
        holdout_fraction=holdout_fraction,
        seed=seed,
    )
    try:
        config = TrainConfig(
            run_key=run_key,
            base_model=base_model,
            lora=LoraSettings(
                rank=lora.rank,
                seed=lora.seed,
                train_mlp=lora.train_mlp,
                train_attn=lora.train_attn,
                train_unembed=lora.train_unembed,
            ),
            learning_rate=learning_rate,
            lr_schedule=lr_schedule,
            batch_size=batch_size,
            num_epochs=num_epochs,
            max_steps=max_steps,
            checkpoint_every=checkpoints.every,
            checkpoint_ttl_seconds=checkpoints.ttl_seconds,
            final_ttl_seconds=checkpoints.final_ttl_seconds,
            pipeline_depth=pipeline_depth,
            seed=seed,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"invalid training settings: {problems}") from None
    BatchPlan.build(data, config)  # DatasetError when no batch can be formed
    return _Plan(dataset=data, config=config)


def _default_lr(base_model: str) -> float:
    """The model's recommended LoRA learning rate, or an error saying to pass one."""
    from prefect_tinker.errors import UnknownModelError
    from prefect_tinker.models import get_lr

    try:
        return get_lr(base_model)
    except UnknownModelError:
        raise ConfigurationError(
            f"no learning-rate formula for {base_model!r} (not in the model registry); "
            "pass learning_rate explicitly."
        ) from None


def _export(
    credentials: TinkerCredentials,
    final_checkpoint: str,
    options: ExportOptions,
    result: SftResult,
) -> None:
    """Save sampler / external weights of the final checkpoint, then run the export flow
    (download + validate, optional Hub push and Tinker publish) on the external weights."""
    from prefect_tinker.flows.export import export_checkpoint

    if options.sampler_weights:
        result.sampler_path = _cached_path(
            save_weights_for_sampler, credentials, final_checkpoint, options.ttl_seconds
        )
    if not (options.external_weights or options.download or options.hf_repo_id):
        return
    result.external_path = _cached_path(
        save_weights_external, credentials, final_checkpoint, options.ttl_seconds
    )
    if not (options.download or options.publish or options.hf_repo_id):
        return
    metrics = {"step": float(result.final_step)}
    if result.final_loss is not None:
        metrics["final_loss"] = result.final_loss
    if result.eval_nll is not None:
        metrics["eval_nll"] = result.eval_nll
    exported = export_checkpoint(
        credentials=credentials,
        tinker_path=result.external_path,
        dest=options.download_dir,
        download=options.download or bool(options.hf_repo_id),
        hf_repo_id=options.hf_repo_id,
        hf_credentials=options.hf_credentials,
        publish=options.publish,
        training_metrics=metrics,
    )
    result.adapter_dir = exported.adapter_dir
    result.export = exported.model_dump(mode="json")


def _cached_path(save: Any, credentials: TinkerCredentials, source: str, ttl: int | None) -> str:
    """Run a cached save task; if the cached checkpoint is gone from the service, save again."""
    path = save(credentials, source, "final", ttl_seconds=ttl)
    run_id = path[len("tinker://") :].split("/", 1)[0]
    live = {c.tinker_path for c in list_checkpoints(credentials, run_id)}
    if path not in live:
        path = save.with_options(refresh_cache=True)(credentials, source, "final", ttl_seconds=ttl)
    return path
