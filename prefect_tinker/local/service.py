"""What the local service does for each request, independent of HTTP.

Request threads validate, check ownership and register futures; every engine call runs as a job
on the single compute worker. Models live in memory (`_models`, touched only by the worker);
runs, checkpoints and samplers live in the :class:`~prefect_tinker.local.store.Store`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_tinker.errors import InvalidTinkerPath
from prefect_tinker.local.engine_types import AdamParams, BaseModelInfo, DatumArrays, LoraSpec
from prefect_tinker.local.faults import FaultInjector, ServiceStats
from prefect_tinker.local.futures import (
    ComputeWorker,
    FutureEntry,
    FutureTable,
    Payload,
    Sequencer,
    UserError,
)
from prefect_tinker.local.signing import DEFAULT_URL_TTL_S, UrlSigner
from prefect_tinker.local.store import CheckpointRecord, RunRecord, SamplerRecord, Store, dir_size
from prefect_tinker.local.wire import (
    DecodedForwardBackward,
    encode_forward_output,
    encode_sample_response,
)
from prefect_tinker.paths import (
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
    SEGMENT_TO_TYPE,
    TinkerPath,
    check_checkpoint_name,
)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error answer: a 4xx status and a `detail` that names the bad value."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def not_found(what: str) -> ApiError:
    return ApiError(
        404, f"{what} not found (it does not exist, expired, or belongs to another key)"
    )


def check_ttl(ttl_seconds: int | None) -> None:
    if ttl_seconds is not None and not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ApiError(
            400,
            f"ttl_seconds={ttl_seconds} is out of range; use {MIN_TTL_SECONDS} (1 hour) to "
            f"{MAX_TTL_SECONDS} (10 years), or null for no expiry.",
        )


def stringify(meta: dict[str, Any] | None) -> dict[str, str] | None:
    """Metadata as the SDK's response types want it: string values."""
    if meta is None:
        return None
    return {str(k): v if isinstance(v, str) else _json(v) for k, v in meta.items()}


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


@dataclass
class SampleArgs:
    prompt: list[int]
    num_samples: int
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: list[int] | list[str] | str | None
    seed: int | None
    prompt_logprobs: bool
    prompt_logprobs_last_n: int | None


class Service:
    """The local Tinker service's behaviour; `app.py` maps HTTP onto it."""

    def __init__(
        self,
        store: Store,
        signer: UrlSigner,
        engine_cache_dir: Path,
        faults: FaultInjector,
        stats: ServiceStats,
        *,
        fwdbwd_max_chunk_len: int = 1024,
    ) -> None:
        self.store = store
        self.signer = signer
        self.faults = faults
        self.stats = stats
        self.fwdbwd_max_chunk_len = fwdbwd_max_chunk_len
        self.futures = FutureTable()
        self.worker = ComputeWorker(self.futures, stats)
        self.sequencer = Sequencer(self.worker, stats)
        self._engine_cache_dir = engine_cache_dir
        self._engine: Any = None
        self._models: dict[str, Any] = {}  # worker thread only
        self._base_info: dict[str, BaseModelInfo] = {}
        self._base_models: list[BaseModelInfo] | None = None

    def close(self) -> None:
        self.sequencer.stop()
        self.worker.call(self._close_all)
        self.worker.stop()

    # ---- engine (worker thread) -------------------------------------------------------------
    def _get_engine(self) -> Any:
        if self._engine is None:
            from prefect_tinker.local.engine import Engine

            self._engine_cache_dir.mkdir(parents=True, exist_ok=True)
            self._engine = Engine(self._engine_cache_dir)
        return self._engine

    def _close_all(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()

    def _model(self, model_id: str) -> Any:
        model = self._models.get(model_id)
        if model is None:
            raise UserError(
                f"model {model_id!r} is not available (its creation or load failed, or its "
                "session finished); create it again or load it from a checkpoint."
            )
        return model

    async def base_models(self) -> list[BaseModelInfo]:
        import asyncio

        if self._base_models is None:
            fut = self.worker.call(lambda: self._get_engine().base_models())
            self._base_models = await asyncio.wrap_future(fut)
        return self._base_models

    async def base_model_info(self, name: str) -> BaseModelInfo:
        """Engine info for `name`; 400 naming the supported models when unknown."""
        import asyncio

        from prefect_tinker.local.engine_types import EngineError

        if name not in self._base_info:
            fut = self.worker.call(lambda: self._get_engine().base_model_info(name))
            try:
                self._base_info[name] = await asyncio.wrap_future(fut)
            except EngineError as exc:
                raise ApiError(400, str(exc)) from exc
        return self._base_info[name]

    # ---- access checks (request threads) -----------------------------------------------------
    def owned_run(self, owner: str, model_id: str) -> RunRecord:
        run = self.store.get_run(model_id)
        if run is None or run.owner != owner:
            raise not_found(f"training run {model_id!r}")
        return run

    def live_run(self, owner: str, model_id: str) -> RunRecord:
        """A run this process can train (created or loaded since the service started)."""
        if not self.sequencer.is_open(model_id):
            run = self.store.get_run(model_id)
            if run is not None and run.owner == owner:
                raise ApiError(
                    404,
                    f"training run {model_id!r} is not loaded in this service process (the "
                    "service restarted or its session finished); load it from a checkpoint with "
                    "create_training_client_from_state.",
                )
            raise not_found(f"model {model_id!r}")
        run = self.store.get_run(model_id)
        if run is not None and run.owner != owner:
            raise not_found(f"model {model_id!r}")
        return run  # type: ignore[return-value]  # None while create/load is still queued

    def readable_checkpoint(
        self, owner: str, tinker_path: str
    ) -> tuple[TinkerPath, CheckpointRecord]:
        try:
            path = TinkerPath.parse(tinker_path)
        except InvalidTinkerPath as exc:
            raise ApiError(400, str(exc)) from exc
        ck = self.store.get_checkpoint(path.run_id, path.checkpoint_id)
        if ck is None or (ck.owner != owner and not ck.public):
            raise not_found(f"checkpoint {tinker_path!r}")
        return path, ck

    def owned_checkpoint(self, owner: str, run_id: str, checkpoint_id: str) -> CheckpointRecord:
        ck = self.store.get_checkpoint(run_id, checkpoint_id)
        if ck is None or ck.owner != owner:
            raise not_found(f"checkpoint 'tinker://{run_id}/{checkpoint_id}'")
        return ck

    # ---- futures -----------------------------------------------------------------------------
    def new_future(self, request_type: str, slow_s: float = 0.0) -> FutureEntry:
        delay = self.faults.config.latency_s + slow_s
        return self.futures.new(request_type, delay_s=delay)

    def submit_sequenced(
        self, model_id: str, seq_id: int | None, request_type: str, job: Any, slow_s: float
    ) -> FutureEntry | str:
        """Queue `job` in the model's seq order; a resubmitted seq_id gets its first request id."""
        existing = self.sequencer.seen(model_id, seq_id)
        if existing is not None:
            return existing
        entry = self.new_future(request_type, slow_s)
        self.store.touch_run(model_id)
        self.sequencer.submit(model_id, seq_id, job, entry)
        return entry

    # ---- training ----------------------------------------------------------------------------
    def create_model(
        self,
        owner: str,
        session_id: str,
        model_seq_id: int,
        base_model: str,
        lora: LoraSpec,
        user_metadata: dict[str, Any] | None,
        slow_s: float,
    ) -> FutureEntry:
        model_id = f"{session_id}:train:{model_seq_id}"
        if self.sequencer.is_open(model_id) or self.store.get_run(model_id) is not None:
            raise ApiError(400, f"model {model_id!r} already exists; use a new model_seq_id.")
        entry = self.new_future("CreateModel", slow_s)
        self.sequencer.open(model_id, 1)

        def job() -> Payload:
            model = self._get_engine().create(base_model, lora)
            self._models[model_id] = model
            now = time.time()
            self.store.add_run(
                RunRecord(
                    model_id,
                    owner,
                    session_id,
                    base_model,
                    dataclasses.asdict(lora),
                    user_metadata,
                    now,
                    now,
                )
            )
            return Payload(json={"model_id": model_id, "type": "create_model"})

        self.worker.submit(job, entry)
        return entry

    def forward_backward(
        self, owner: str, req: DecodedForwardBackward, slow_s: float
    ) -> FutureEntry | str:
        self.live_run(owner, req.model_id)
        data = [DatumArrays(tokens=d.tokens, loss_fn_inputs=d.loss_fn_inputs) for d in req.data]
        kind = "Forward" if req.forward_only else "ForwardBackward"

        def job() -> Payload:
            if not req.loss_fn:
                raise UserError(
                    "forward_backward request has an empty loss_fn; use e.g. 'cross_entropy'."
                )
            result = self._model(req.model_id).forward_backward(
                data, req.loss_fn, req.loss_fn_config, forward_only=req.forward_only
            )
            return Payload(proto=encode_forward_output(result.outputs, result.metrics))

        return self.submit_sequenced(req.model_id, req.seq_id, kind, job, slow_s)

    def optim_step(
        self, owner: str, model_id: str, seq_id: int | None, adam: AdamParams | None, slow_s: float
    ) -> FutureEntry | str:
        self.live_run(owner, model_id)

        def job() -> Payload:
            if adam is None:
                raise UserError(
                    "optim_step without adam_params: the local service only implements AdamW."
                )
            metrics = self._model(model_id).optim_step(adam)
            self.stats.optim_steps[model_id] += 1
            return Payload(json={"metrics": metrics, "type": "optim_step"})

        return self.submit_sequenced(model_id, seq_id, "OptimStep", job, slow_s)

    def _new_checkpoint(
        self,
        owner: str,
        model_id: str,
        segment: str,
        name: str,
        staged: Path,
        ttl_seconds: int | None,
        user_metadata: dict[str, Any] | None,
        encrypted: bool = False,
    ) -> CheckpointRecord:
        checkpoint_id = f"{segment}/{name}"
        rel = self.store.checkpoint_rel_dir(model_id, checkpoint_id)
        size = dir_size(staged)
        self.store.commit_dir(staged, rel)
        now = time.time()
        ck = CheckpointRecord(
            run_id=model_id,
            checkpoint_id=checkpoint_id,
            type=SEGMENT_TO_TYPE[segment],
            owner=owner,
            rel_dir=rel,
            size_bytes=size,
            public=False,
            user_metadata=stringify(user_metadata),
            created=now,
            expires_at=None if ttl_seconds is None else now + ttl_seconds,
            encrypted=encrypted,
        )
        self.store.add_checkpoint(ck)
        return ck

    def _checked_name(self, name: str | None, what: str) -> str:
        if not name:
            raise UserError(
                f"{what} needs a non-empty 'path' (the checkpoint name, e.g. 'step-10')."
            )
        try:
            return check_checkpoint_name(name)
        except InvalidTinkerPath as exc:
            raise UserError(str(exc)) from exc

    def save_weights(
        self,
        owner: str,
        model_id: str,
        seq_id: int | None,
        name: str | None,
        overwrite: bool,
        ttl_seconds: int | None,
        user_metadata: dict[str, Any] | None,
        slow_s: float,
    ) -> FutureEntry | str:
        self.live_run(owner, model_id)

        def job() -> Payload:
            checked = self._checked_name(name, "save_weights")
            check_ttl_user(ttl_seconds)
            if not overwrite and self.store.get_checkpoint(model_id, f"weights/{checked}"):
                raise UserError(
                    f"checkpoint 'tinker://{model_id}/weights/{checked}' already exists; pick "
                    "another name or pass overwrite=True."
                )
            staged = self.store.staging()
            self._model(model_id).save_state(staged)
            ck = self._new_checkpoint(
                owner, model_id, "weights", checked, staged, ttl_seconds, user_metadata
            )
            return Payload(json={"path": ck.tinker_path, "type": "save_weights"})

        return self.submit_sequenced(model_id, seq_id, "SaveWeights", job, slow_s)

    def save_weights_for_sampler(
        self,
        owner: str,
        model_id: str,
        seq_id: int | None,
        name: str | None,
        sampling_session_seq_id: int | None,
        ttl_seconds: int | None,
        user_metadata: dict[str, Any] | None,
        slow_s: float,
    ) -> FutureEntry | str:
        run = self.live_run(owner, model_id)
        session_id = run.session_id if run is not None else model_id.split(":train:")[0]

        def job() -> Payload:
            model = self._model(model_id)
            if name is None:
                if sampling_session_seq_id is None:
                    raise UserError(
                        "save_weights_for_sampler needs either 'path' (a named checkpoint) or "
                        "'sampling_session_seq_id' (an ephemeral sampler)."
                    )
                sampler_id = f"{session_id}:sample:{sampling_session_seq_id}"
                staged = self.store.staging()
                model.save_adapter(staged)
                rel = self.store.ephemeral_rel_dir(sampler_id)
                self.store.commit_dir(staged, rel)
                self.store.add_sampler(
                    SamplerRecord(
                        sampler_id,
                        owner,
                        session_id,
                        model.base_model,
                        None,
                        rel,
                        True,
                        time.time(),
                    )
                )
                return Payload(
                    json={"sampling_session_id": sampler_id, "type": "save_weights_for_sampler"}
                )
            checked = self._checked_name(name, "save_weights_for_sampler")
            check_ttl_user(ttl_seconds)
            staged = self.store.staging()
            model.save_adapter(staged)
            ck = self._new_checkpoint(
                owner, model_id, "sampler_weights", checked, staged, ttl_seconds, user_metadata
            )
            return Payload(json={"path": ck.tinker_path, "type": "save_weights_for_sampler"})

        return self.submit_sequenced(model_id, seq_id, "SaveWeightsForSampler", job, slow_s)

    def save_weights_external(
        self,
        owner: str,
        model_id: str,
        seq_id: int | None,
        name: str | None,
        ttl_seconds: int | None,
        recipients: list[str] | None,
        slow_s: float,
    ) -> FutureEntry | str:
        self.live_run(owner, model_id)

        def job() -> Payload:
            checked = self._checked_name(name, "save_weights_external")
            check_ttl_user(ttl_seconds)
            parsed = parse_recipients(recipients) if recipients else None
            staged = self.store.staging()
            self._model(model_id).save_adapter(staged)
            if parsed:
                encrypt_dir(staged, parsed)
            ck = self._new_checkpoint(
                owner,
                model_id,
                "external_weights",
                checked,
                staged,
                ttl_seconds,
                None,
                encrypted=bool(parsed),
            )
            return Payload(
                json={
                    "path": ck.tinker_path,
                    "size_bytes": ck.size_bytes,
                    "type": "save_weights_external",
                }
            )

        return self.submit_sequenced(model_id, seq_id, "SaveWeightsExternal", job, slow_s)

    def load_new_model(
        self,
        owner: str,
        session_id: str,
        model_seq_id: int,
        tinker_path: str,
        with_optimizer: bool,
        user_metadata: dict[str, Any] | None,
        slow_s: float,
    ) -> FutureEntry:
        """Create-via-load: model `<session>:train:<model_seq_id>` from a training checkpoint."""
        path, ck = self.readable_checkpoint(owner, tinker_path)
        if ck.type != "training":
            raise ApiError(
                400,
                f"{tinker_path!r} is a {ck.type} checkpoint; load_weights needs a 'weights/' "
                "checkpoint written by save_state.",
            )
        model_id = f"{session_id}:train:{model_seq_id}"
        if self.sequencer.is_open(model_id) or self.store.get_run(model_id) is not None:
            raise ApiError(400, f"model {model_id!r} already exists; use a new model_seq_id.")
        source = self.store.path_of(ck.rel_dir)
        entry = self.new_future("LoadWeights", slow_s)
        self.sequencer.open(model_id, 1)

        def job() -> Payload:
            model = self._get_engine().load(source, with_optimizer=with_optimizer)
            self._models[model_id] = model
            now = time.time()
            self.store.add_run(
                RunRecord(
                    model_id,
                    owner,
                    session_id,
                    model.base_model,
                    dataclasses.asdict(model.lora),
                    user_metadata,
                    now,
                    now,
                )
            )
            return Payload(json={"path": str(path), "model_id": model_id, "type": "load_weights"})

        self.worker.submit(job, entry)
        return entry

    def load_into_model(
        self,
        owner: str,
        model_id: str,
        seq_id: int | None,
        tinker_path: str,
        with_optimizer: bool,
        slow_s: float,
    ) -> FutureEntry | str:
        """Legacy load: replace an existing model's weights (and optimizer) from a checkpoint."""
        self.live_run(owner, model_id)
        path, ck = self.readable_checkpoint(owner, tinker_path)
        if ck.type != "training":
            raise ApiError(
                400, f"{tinker_path!r} is a {ck.type} checkpoint; load a 'weights/' one."
            )
        source = self.store.path_of(ck.rel_dir)

        def job() -> Payload:
            model = self._get_engine().load(source, with_optimizer=with_optimizer)
            old = self._models.pop(model_id, None)
            if old is not None:
                old.close()
            self._models[model_id] = model
            return Payload(json={"path": str(path), "model_id": model_id, "type": "load_weights"})

        return self.submit_sequenced(model_id, seq_id, "LoadWeights", job, slow_s)

    def finish_session(self, session_id: str) -> None:
        runs, _ = self.store.session_members(session_id)
        for run_id in runs:
            for entry in self.sequencer.close(run_id):
                self.futures.resolve(
                    entry, None, {"error": f"session {session_id!r} finished", "category": "user"}
                )

        def job() -> None:
            for run_id in runs:
                model = self._models.pop(run_id, None)
                if model is not None:
                    model.close()
            self.store.drop_ephemeral_samplers(session_id)

        self.worker.call(job)

    # ---- sampling ----------------------------------------------------------------------------
    def new_sampler(
        self,
        owner: str,
        session_id: str,
        seq: int,
        base_model: str | None,
        model_path: str | None,
    ) -> SamplerRecord:
        sampler_id = f"{session_id}:sample:{seq}"
        if model_path:
            _, ck = self.readable_checkpoint(owner, model_path)
            run = self.store.get_run(ck.run_id)
            if ck.encrypted:
                raise ApiError(
                    400, f"{model_path!r} is age-encrypted; the service cannot sample from it."
                )
            base = run.base_model if run is not None else base_model
            if base is None:
                raise ApiError(404, f"the training run of {model_path!r} is gone; pass base_model.")
        elif base_model:
            base = base_model
        else:
            raise ApiError(400, "create_sampling_session needs 'model_path' or 'base_model'.")
        rec = SamplerRecord(
            sampler_id, owner, session_id, base, model_path or None, None, False, time.time()
        )
        self.store.add_sampler(rec)
        return rec

    def readable_sampler(self, owner: str, sampler_id: str) -> SamplerRecord:
        rec = self.store.get_sampler(sampler_id)
        if rec is None or rec.owner != owner:
            raise not_found(f"sampler {sampler_id!r}")
        return rec

    def _adapter_for(self, owner: str, rec: SamplerRecord) -> Path | None:
        """The PEFT dir to sample with (worker thread); a training checkpoint is converted once."""
        if rec.adapter_rel_dir:
            return self.store.path_of(rec.adapter_rel_dir)
        if not rec.model_path:
            return None
        try:
            _, ck = self.readable_checkpoint(owner, rec.model_path)
        except ApiError as exc:
            raise UserError(exc.detail) from exc
        source = self.store.path_of(ck.rel_dir)
        if ck.type != "training":
            return source
        derived = self.store.path_of(
            self.store.ephemeral_rel_dir(f"derived-{ck.run_id}-{ck.checkpoint_id}")
        )
        marker = derived / ".created"
        if not (marker.exists() and marker.read_text() == repr(ck.created)):
            staged = self.store.staging()
            model = self._get_engine().load(source, with_optimizer=False)
            try:
                model.save_adapter(staged)
            finally:
                model.close()
            (staged / ".created").write_text(repr(ck.created))
            self.store.commit_dir(staged, str(derived.relative_to(self.store.data_dir)))
        return derived

    def sample(
        self, owner: str, rec: SamplerRecord, args: SampleArgs, slow_s: float
    ) -> FutureEntry:
        entry = self.new_future("Sample", slow_s)

        def job() -> Payload:
            adapter = self._adapter_for(owner, rec)
            sampler = self._get_engine().sampler(rec.base_model, adapter)
            result = sampler.sample(
                args.prompt,
                args.num_samples,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                stop=args.stop,
                seed=args.seed,
                prompt_logprobs=args.prompt_logprobs,
            )
            prompt_lp = result.prompt_logprobs if args.prompt_logprobs else None
            if prompt_lp is not None and args.prompt_logprobs_last_n:
                keep = args.prompt_logprobs_last_n
                prompt_lp = [None] * (len(prompt_lp) - keep) + list(prompt_lp[-keep:])
            return Payload(proto=encode_sample_response(result.sequences, prompt_lp))

        self.worker.submit(job, entry)
        return entry

    # ---- signed downloads --------------------------------------------------------------------
    def external_urls(self, base_url: str, ck: CheckpointRecord) -> tuple[dict[str, str], int]:
        root = self.store.path_of(ck.rel_dir)
        expires_at = int(time.time()) + DEFAULT_URL_TTL_S
        if ck.expires_at is not None:
            expires_at = min(expires_at, int(ck.expires_at))
        urls = {}
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = f.relative_to(root).as_posix()
            urls[rel] = self.signer.url(
                base_url, f"{ck.run_id}/{ck.checkpoint_id}/{rel}", expires_at
            )
        return urls, expires_at

    def signed_file(self, signed_path: str, exp: str, sig: str) -> Path:
        """The file behind a signed URL; 403 for a bad/expired signature, 404 once gone."""
        try:
            expires_at = int(exp)
        except ValueError as exc:
            raise ApiError(400, f"signed URL has a malformed 'exp' value {exp!r}.") from exc
        if not self.signer.verify(signed_path, expires_at, sig):
            raise ApiError(
                403, "signed URL is invalid or expired; ask for new external_weights_urls."
            )
        parts = signed_path.split("/")
        if len(parts) < 4 or any(p in ("", ".", "..") for p in parts):
            raise ApiError(400, f"signed path {signed_path!r} is malformed.")
        run_id, checkpoint_id, rel = parts[0], "/".join(parts[1:3]), "/".join(parts[3:])
        ck = self.store.get_checkpoint(run_id, checkpoint_id)
        if ck is None:
            raise not_found(f"checkpoint 'tinker://{run_id}/{checkpoint_id}'")
        root = self.store.path_of(ck.rel_dir).resolve()
        target = (root / rel).resolve()
        if root not in target.parents or not target.is_file():
            raise not_found(f"file {rel!r} of checkpoint 'tinker://{run_id}/{checkpoint_id}'")
        return target


def check_ttl_user(ttl_seconds: int | None) -> None:
    try:
        check_ttl(ttl_seconds)
    except ApiError as exc:
        raise UserError(exc.detail) from exc


def parse_recipients(recipients: list[str]) -> list[Any]:
    """age recipients ("age1…" or SSH public keys) as pyrage objects; UserError names a bad one."""
    import pyrage

    parsed = []
    for r in recipients:
        try:
            if r.startswith("age1"):
                parsed.append(pyrage.x25519.Recipient.from_str(r))
            else:
                parsed.append(pyrage.ssh.Recipient.from_str(r))
        except Exception as exc:
            raise UserError(
                f"age_encryption_recipients: {r[:24]!r}… is not an age ('age1…') or SSH public key."
            ) from exc
    return parsed


def encrypt_dir(root: Path, recipients: list[Any]) -> None:
    """Replace every file under `root` by `<file>.age`, encrypted to `recipients`."""
    import pyrage

    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        f.with_name(f.name + ".age").write_bytes(pyrage.encrypt(f.read_bytes(), recipients))
        f.unlink()
