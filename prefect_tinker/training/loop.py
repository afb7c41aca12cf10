"""The pipelined supervised training loop with checkpoint cadence and exact resume.

Pipelining: the SDK's `forward_backward` / `optim_step` / `save_state` return futures at once
and the service applies one training run's requests in submission order, so the loop keeps up
to `pipeline_depth` steps in flight and only then waits for the oldest step's results.

Checkpoints: after step N's `optim_step` (and before batch N+1 is sent) `save_state` is
submitted with the loop state in its metadata. The loop then drains: it waits for the save and
calls `on_checkpoint` before submitting step N+1. A process stopped at `on_checkpoint` (or
killed right after it) has therefore sent no step past its newest checkpoint, and resume
repeats no optimizer step.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from prefect_tinker.checkpoints import (
    CheckpointState,
    ResumePoint,
    find_resume_point,
    run_metadata,
)
from prefect_tinker.errors import ResumeMismatchError
from prefect_tinker.models import lr_at_step
from prefect_tinker.training.config import TrainConfig
from prefect_tinker.training.schedule import BatchPlan, BatchSource, EpochBatches

if TYPE_CHECKING:
    import tinker

logger = logging.getLogger(__name__)

LOSS_FN = "cross_entropy"


class StepMetrics(TypedDict):
    """Per-step metrics handed to `on_step` and kept in `TrainResult.metrics`."""

    step: int  # optimizer steps applied after this one (1-based)
    epoch: int
    loss: float  # loss:sum / weighted tokens (mean NLL per trained token)
    tokens: int  # model-input tokens in the batch
    weighted_tokens: float  # sum of loss weights in the batch
    learning_rate: float
    time_s: float  # wall time since the previous step's results arrived
    elapsed_s: float  # wall time since this call of `train` started


@dataclass(frozen=True)
class CheckpointInfo:
    """A resumable checkpoint that the service has confirmed."""

    path: str
    step: int
    loss: float
    final: bool = False


@dataclass(frozen=True)
class TrainResult:
    run_key: str
    run_id: str  # training run of the final checkpoint
    final_state_path: str
    final_step: int
    total_steps: int
    steps_run: int  # optimizer steps this call sent
    resumed_from: str | None
    metrics: list[StepMetrics] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        return self.metrics[-1]["loss"] if self.metrics else None


@dataclass
class _InFlight:
    step: int
    epoch: int
    learning_rate: float
    tokens: int
    weighted_tokens: float
    forward_backward: tinker.APIFuture[tinker.ForwardBackwardOutput]
    optim: tinker.APIFuture[tinker.OptimStepResponse]
    save: tinker.APIFuture | None
    final: bool


def train(
    service: tinker.ServiceClient,
    dataset: BatchSource,
    config: TrainConfig,
    *,
    on_step: Callable[[StepMetrics], None] | None = None,
    on_checkpoint: Callable[[CheckpointInfo], None] | None = None,
    rest: tinker.RestClient | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `dataset`, resuming the run_key's newest checkpoint if any.

    A run whose final checkpoint exists returns at once without training requests. An
    exception raised by `on_step` / `on_checkpoint` stops the loop; calling `train` again
    continues from the newest checkpoint and ends with bit-identical weights. Stopped inside
    `on_checkpoint`, nothing past that checkpoint has been sent; stopped elsewhere, up to
    `pipeline_depth` submitted steps may still be applied to the abandoned training run, and
    the resumed run replays them from the checkpoint.

    Example:
        >>> service = tinker.ServiceClient(base_url=url, api_key=key)  # doctest: +SKIP
        >>> cfg = TrainConfig(base_model="Qwen/Qwen3-0.6B", learning_rate=1e-4)
        >>> result = train(service, dataset, cfg, on_step=print)  # doctest: +SKIP
        >>> result.final_state_path  # doctest: +SKIP
        'tinker://…:train:0/weights/step-000042'
    """
    plan = BatchPlan.build(dataset, config)
    fingerprint = dataset.fingerprint
    config_hash = config.config_hash()
    run_key = config.resolved_run_key(fingerprint)
    rest = rest if rest is not None else _rest_client(service)
    resume = find_resume_point(rest, run_key, config_hash=config_hash, data_fingerprint=fingerprint)
    if resume is not None:
        _check_resume(resume, plan)
        if resume.final:
            logger.info("run %s already finished at %s", run_key, resume.tinker_path)
            path = resume.tinker_path
            return TrainResult(run_key, resume.run_id, path, resume.step, plan.total_steps, 0, path)
    session = _Session(service, dataset, config, plan, run_key, config_hash, fingerprint)
    return session.run(resume, on_step, on_checkpoint)


class _Session:
    """One call of `train`: a training client and the steps it sends."""

    def __init__(
        self,
        service: tinker.ServiceClient,
        dataset: BatchSource,
        config: TrainConfig,
        plan: BatchPlan,
        run_key: str,
        config_hash: str,
        fingerprint: str,
    ) -> None:
        self.service = service
        self.config = config
        self.plan = plan
        self.run_key = run_key
        self.config_hash = config_hash
        self.fingerprint = fingerprint
        self.batches = EpochBatches(dataset, config)
        self.metrics: list[StepMetrics] = []
        self.checkpoints: list[CheckpointInfo] = []

    def run(
        self,
        resume: ResumePoint | None,
        on_step: Callable[[StepMetrics], None] | None,
        on_checkpoint: Callable[[CheckpointInfo], None] | None,
    ) -> TrainResult:
        import tinker

        client = self._open(resume)
        first = resume.step if resume else 0
        self.started = self.last_done = time.monotonic()
        cfg = self.config
        pending: deque[_InFlight] = deque()
        final_path = ""
        for step in range(first, self.plan.total_steps):
            epoch, index = self.plan.locate(step)
            batch = self.batches.get(epoch, index)
            lr = lr_at_step(cfg.learning_rate, step, self.plan.total_steps, cfg.lr_schedule)
            adam = tinker.AdamParams(
                learning_rate=lr,
                beta1=cfg.beta1,
                beta2=cfg.beta2,
                eps=cfg.eps,
                weight_decay=cfg.weight_decay,
                grad_clip_norm=cfg.grad_clip_norm,
            )
            fb = client.forward_backward(batch, LOSS_FN)
            optim = client.optim_step(adam)
            done = step + 1
            final = done == self.plan.total_steps
            save = None
            if final or (cfg.checkpoint_every is not None and done % cfg.checkpoint_every == 0):
                save = self._save(client, done, final)
            pending.append(_InFlight(done, epoch, lr, *_batch_size(batch), fb, optim, save, final))
            # Drain at checkpoints so nothing past a confirmed checkpoint is in flight.
            while pending and (save is not None or len(pending) >= cfg.pipeline_depth):
                path = self._resolve(pending.popleft(), on_step, on_checkpoint)
                final_path = path or final_path
        return TrainResult(
            self.run_key,
            client.model_id,
            final_path,
            self.plan.total_steps,
            self.plan.total_steps,
            self.plan.total_steps - first,
            resume.tinker_path if resume else None,
            self.metrics,
            self.checkpoints,
        )

    def _open(self, resume: ResumePoint | None) -> tinker.TrainingClient:
        metadata = run_metadata(self.run_key, self.config_hash)
        if resume is not None:
            logger.info(
                "run %s resumes from %s (step %d)", self.run_key, resume.tinker_path, resume.step
            )
            return self.service.create_training_client_from_state_with_optimizer(
                resume.tinker_path, user_metadata=metadata
            ).result()
        lora = self.config.lora
        return self.service.create_lora_training_client(
            base_model=self.config.base_model,
            rank=lora.rank,
            seed=lora.seed,
            train_mlp=lora.train_mlp,
            train_attn=lora.train_attn,
            train_unembed=lora.train_unembed,
            user_metadata=metadata,
        ).result()

    def _save(self, client: tinker.TrainingClient, done: int, final: bool) -> tinker.APIFuture:
        epoch, next_batch = self.plan.locate(done)
        state = CheckpointState(
            run_key=self.run_key,
            step=done,
            total_steps=self.plan.total_steps,
            epoch=epoch,
            next_batch=next_batch,
            data_fingerprint=self.fingerprint,
            config_hash=self.config_hash,
            final=final,
        )
        ttl = self.config.final_ttl_seconds if final else self.config.checkpoint_ttl_seconds
        return client.save_state(
            name=f"step-{done:06d}", ttl_seconds=ttl, user_metadata=state.to_metadata()
        )

    def _resolve(
        self,
        step: _InFlight,
        on_step: Callable[[StepMetrics], None] | None,
        on_checkpoint: Callable[[CheckpointInfo], None] | None,
    ) -> str | None:
        output = step.forward_backward.result()
        step.optim.result()
        now = time.monotonic()
        loss_sum = output.metrics["loss:sum"]
        metrics = StepMetrics(
            step=step.step,
            epoch=step.epoch,
            loss=loss_sum / step.weighted_tokens if step.weighted_tokens else float("nan"),
            tokens=step.tokens,
            weighted_tokens=step.weighted_tokens,
            learning_rate=step.learning_rate,
            time_s=now - self.last_done,
            elapsed_s=now - self.started,
        )
        self.last_done = now
        self.metrics.append(metrics)
        logger.debug("step %d/%d loss %.4f", step.step, self.plan.total_steps, metrics["loss"])
        if on_step is not None:
            on_step(metrics)
        if step.save is None:
            return None
        info = CheckpointInfo(step.save.result().path, step.step, metrics["loss"], step.final)
        self.checkpoints.append(info)
        if on_checkpoint is not None:
            on_checkpoint(info)
        return info.path


def weighted_tokens(datum: tinker.Datum) -> float:
    """Sum of a datum's loss weights (every target token counts 1 when it has none)."""
    weights = datum.loss_fn_inputs.get("weights")
    if weights is None:
        return float(len(datum.loss_fn_inputs["target_tokens"].to_numpy()))
    return float(weights.to_numpy().sum())


def _batch_size(batch: list[tinker.Datum]) -> tuple[int, float]:
    """(model-input tokens, sum of loss weights) of a batch."""
    tokens = sum(d.model_input.length for d in batch)
    return tokens, sum(weighted_tokens(d) for d in batch)


def _check_resume(resume: ResumePoint, plan: BatchPlan) -> None:
    expected = plan.locate(resume.step) if resume.step <= plan.total_steps else None
    state = resume.state
    if state.total_steps != plan.total_steps or expected != (state.epoch, state.next_batch):
        raise ResumeMismatchError(
            f"checkpoint {resume.tinker_path} was saved for {state.total_steps} steps with its "
            f"next batch at epoch {state.epoch} index {state.next_batch}, but this dataset and "
            f"config plan {plan.total_steps} steps (next batch {expected}). The data order "
            "differs although the fingerprints match; use another run_key to start over."
        )


def _rest_client(service: tinker.ServiceClient) -> tinker.RestClient:
    """A RestClient on the service client's connection (pass `rest=` to choose another)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return service.create_rest_client()
