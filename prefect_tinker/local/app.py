"""HTTP routes of the local Tinker service (wire protocol: specs/tinker-wire-protocol.md §6).

`build_app` wires the routes onto a :class:`~prefect_tinker.local.service.Service`. The
:class:`Gate` middleware counts requests, checks API keys and injects faults before any route
runs, so an injected fault never has an effect the client could see twice.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from prefect_tinker.local import schemas as s
from prefect_tinker.local.auth import KeyRing
from prefect_tinker.local.engine_types import AdamParams, LoraSpec
from prefect_tinker.local.faults import FaultInjector, ServiceStats
from prefect_tinker.local.futures import FutureEntry
from prefect_tinker.local.service import (
    ApiError,
    SampleArgs,
    Service,
    check_ttl,
    not_found,
    stringify,
)
from prefect_tinker.local.signing import SIGNED_PREFIX
from prefect_tinker.local.store import CheckpointRecord, RunRecord, SamplerRecord
from prefect_tinker.local.wire import WireError, decode_forward_backward
from prefect_tinker.paths import SEGMENT_TO_TYPE

API = "/api/v1"
DEFAULT_MAX_TOKENS = 64
T = TypeVar("T", bound=BaseModel)

_CKPT = re.compile(
    r"^training_runs/[^/]+/checkpoints/[^/]+/[^/]+(/(publish|ttl|external_weights_urls))?$"
)


def route_name(method: str, path: str) -> str:
    """A short, stable name for a request's route (for stats and fault decisions)."""
    if path.startswith(SIGNED_PREFIX):
        return "download"
    if not path.startswith(API + "/"):
        return "other"
    rest = path[len(API) + 1 :].strip("/")
    if rest.startswith("client/"):
        return "client_config" if rest == "client/config" else "dynamic_config"
    if rest.startswith("training_runs"):
        parts = rest.split("/")
        if len(parts) == 1:
            return "list_training_runs"
        if len(parts) == 2:
            return "get_training_run"
        if len(parts) == 3:
            return "list_checkpoints"
        if _CKPT.match(rest):
            tail = parts[-1] if len(parts) == 6 else ""
            if tail == "publish":
                return "publish" if method == "POST" else "unpublish"
            if tail == "ttl":
                return "set_ttl"
            if tail == "external_weights_urls":
                return "external_weights_urls"
            return "delete_checkpoint"
        return "training_runs_other"
    if rest.startswith("samplers/"):
        return "get_sampler"
    if rest.startswith("sessions/"):
        return "finish_session" if rest.endswith("/finish") else "get_session"
    if rest == "checkpoints":
        return "list_user_checkpoints"
    return rest.split("/")[0] or "other"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


async def _send_json(
    send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()
) -> None:  # type: ignore[assignment]
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Gate:
    """ASGI middleware: request counts, API-key check, injected faults."""

    def __init__(
        self, app: Any, keyring: KeyRing, faults: FaultInjector, stats: ServiceStats
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.faults = faults
        self.stats = stats

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_name(scope["method"], scope["path"])
        self.stats.requests[route] += 1
        if scope["path"].startswith(API + "/") and route != "healthz":
            headers = dict(scope["headers"])
            key = headers.get(b"x-api-key", b"").decode("latin-1")
            owner = self.keyring.owner(key)
            if owner is None:
                detail = (
                    "missing X-API-Key header"
                    if not key
                    else "API key not accepted by this service"
                )
                await _send_json(
                    send,
                    401,
                    {"detail": detail + "; use a key given to the service with --api-key."},
                )
                return
            scope.setdefault("state", {})["owner"] = owner
            fault = self.faults.draw(route)
            if fault is not None:
                self.stats.faults[fault] += 1
            if fault in ("503", "429"):
                await _send_json(
                    send,
                    int(fault),
                    {"detail": f"injected transient fault ({fault}); retry"},
                    [(b"retry-after-ms", b"100"), (b"x-should-retry", b"true")],
                )
                return
            if fault == "drop":
                # Start a response and return without completing it: uvicorn closes the
                # connection, and the client sees a dropped connection before any effect.
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"64"),
                        ],
                    }
                )
                return
            scope["state"]["slow_s"] = self.faults.slow_delay() if fault == "slow" else 0.0
        await self.app(scope, receive, send)


class _DropFilter(logging.Filter):
    """Keeps the log quiet about connections the fault injector drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _CutTransfer):
            return False
        return "without completing response" not in record.getMessage()


def _owner(request: Request) -> str:
    return request.state.owner


def _slow(request: Request) -> float:
    return getattr(request.state, "slow_s", 0.0)


async def _body(request: Request, model: type[T], what: str) -> T:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise ApiError(400, f"{what}: request body is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ApiError(
            400, f"{what}: request body must be a JSON object, got {type(data).__name__}."
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            f" (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ApiError(400, f"{what}: {problems}") from exc


def _future(result: FutureEntry | str, model_id: str | None = None) -> dict[str, Any]:
    request_id = result if isinstance(result, str) else result.request_id
    out: dict[str, Any] = {"request_id": request_id}
    if model_id:
        out["model_id"] = model_id
    return out


def _limit_offset(limit: int, offset: int) -> None:
    if not 1 <= limit <= 1000:
        raise ApiError(400, f"limit={limit} is out of range; use 1 to 1000.")
    if offset < 0:
        raise ApiError(400, f"offset={offset} must be >= 0.")


def build_app(svc: Service, keyring: KeyRing, *, long_poll_s: float = 20.0) -> FastAPI:
    """The FastAPI app of the local service."""
    app = FastAPI(title="prefect-tinker local Tinker service", docs_url=None, redoc_url=None)
    store = svc.store
    logging.getLogger("uvicorn.error").addFilter(_DropFilter())

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"detail": problems}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = (
            exc.detail if exc.status_code != 404 else "no such route in the local Tinker service"
        )
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    # ---- bootstrap -----------------------------------------------------------------------
    @app.post(API + "/client/config")
    async def client_config() -> dict[str, Any]:
        return {
            "pjwt_auth_enabled": False,
            "credential_default_source": "api_key",
            "use_pyqwest_transport": False,
            "proto_compress_fwdbwd": False,
            "parallel_fwdbwd_chunks": True,
            "fwdbwd_max_chunk_len": svc.fwdbwd_max_chunk_len,
            "fwdbwd_max_chunk_bytes_count": 5_000_000,
            "sample_use_retrieve_futures": False,
            "sample_join_sampling_session": False,
            "custom_loss_server_side": False,
            "sample_no_retries": False,
        }

    @app.post(API + "/client/dynamic_config")
    async def dynamic_config() -> dict[str, Any]:
        return {
            "refresh_interval_sec": 300,
            "sample_cancel_enabled": False,
            "sample_cancel_max_batch_size": 64,
        }

    @app.get(API + "/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(API + "/telemetry")
    async def telemetry() -> dict[str, str]:
        return {"status": "accepted"}

    @app.get(API + "/get_server_capabilities")
    async def capabilities() -> dict[str, Any]:
        models = await svc.base_models()
        return {
            "supported_models": [
                {
                    "model_name": m.name,
                    "max_context_length": m.max_context_length,
                    "trainable": True,
                    "sampleable": True,
                    "kind": m.kind,
                    "stand_in": m.kind != "local-path",
                    "description": m.description,
                }
                for m in models
            ]
        }

    # ---- sessions ------------------------------------------------------------------------
    def owned_session(request: Request, session_id: str) -> Any:
        rec = store.get_session(session_id)
        if rec is None or rec.owner != _owner(request):
            raise not_found(f"session {session_id!r}")
        return rec

    @app.post(API + "/create_session")
    async def create_session(request: Request) -> dict[str, Any]:
        body = await _body(request, s.CreateSession, "create_session")
        sid = store.create_session(_owner(request), body.tags, body.user_metadata, body.project_id)
        return {"type": "create_session", "session_id": sid}

    @app.post(API + "/session_heartbeat")
    async def heartbeat(request: Request) -> Response:
        body = await _body(request, s.SessionRef, "session_heartbeat")
        rec = owned_session(request, body.session_id)
        if rec.finished_at is not None:
            return JSONResponse(
                {"detail": f"session {body.session_id!r} is finished"}, status_code=410
            )
        store.heartbeat(body.session_id)
        return JSONResponse({"type": "session_heartbeat"})

    @app.post(API + "/sessions/{session_id}/finish")
    async def finish(request: Request, session_id: str) -> Response:
        owned_session(request, session_id)
        if store.finish_session(session_id):
            svc.finish_session(session_id)
        return Response(status_code=204)

    @app.get(API + "/sessions/{session_id}")
    async def get_session(request: Request, session_id: str) -> dict[str, Any]:
        rec = owned_session(request, session_id)
        runs, samplers = store.session_members(session_id)
        return {
            "training_run_ids": runs,
            "sampler_ids": samplers,
            "user_metadata": stringify(rec.user_metadata),
        }

    # ---- models & training ---------------------------------------------------------------
    @app.post(API + "/create_model")
    async def create_model(request: Request) -> dict[str, Any]:
        body = await _body(request, s.CreateModel, "create_model")
        owned_session(request, body.session_id)
        await svc.base_model_info(body.base_model)
        lc = body.lora_config
        lora = LoraSpec(lc.rank, lc.seed, lc.train_mlp, lc.train_attn, lc.train_unembed)
        entry = svc.create_model(
            _owner(request),
            body.session_id,
            body.model_seq_id,
            body.base_model,
            lora,
            body.user_metadata,
            _slow(request),
        )
        return _future(entry, f"{body.session_id}:train:{body.model_seq_id}")

    @app.post(API + "/get_info")
    async def get_info(request: Request) -> dict[str, Any]:
        body = await _body(request, s.ModelRef, "get_info")
        run = svc.owned_run(_owner(request), body.model_id)
        info = await svc.base_model_info(run.base_model)
        tokenizer = str(info.tokenizer_dir.resolve()) if info.tokenizer_dir else run.base_model
        return {
            "type": "get_info",
            "model_data": {
                "arch": f"{info.kind}: {info.description}",
                "model_name": run.base_model,
                "tokenizer_id": tokenizer,
            },
            "model_id": run.id,
            "is_lora": True,
            "lora_rank": run.lora.get("rank"),
            "model_name": run.base_model,
        }

    @app.post(API + "/forward_backward")
    async def forward_backward(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if request.headers.get("content-encoding", "").lower() == "zstd":
            import zstandard

            try:
                raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            except zstandard.ZstdError as exc:
                raise ApiError(400, f"forward_backward body is not valid zstd: {exc}") from exc
        try:
            req = decode_forward_backward(raw)
        except WireError as exc:
            raise ApiError(400, str(exc)) from exc
        result = svc.forward_backward(_owner(request), req, _slow(request))
        return _future(result, req.model_id)

    @app.post(API + "/optim_step")
    async def optim_step(request: Request) -> dict[str, Any]:
        body = await _body(request, s.OptimStep, "optim_step")
        a = body.adam_params
        adam = (
            AdamParams(a.learning_rate, a.beta1, a.beta2, a.eps, a.weight_decay, a.grad_clip_norm)
            if a is not None
            else None
        )
        result = svc.optim_step(_owner(request), body.model_id, body.seq_id, adam, _slow(request))
        return _future(result, body.model_id)

    @app.post(API + "/save_weights")
    async def save_weights(request: Request) -> dict[str, Any]:
        b = await _body(request, s.SaveWeights, "save_weights")
        result = svc.save_weights(
            _owner(request),
            b.model_id,
            b.seq_id,
            b.path,
            b.overwrite,
            b.ttl_seconds,
            b.user_metadata,
            _slow(request),
        )
        return _future(result, b.model_id)

    @app.post(API + "/save_weights_for_sampler")
    async def save_weights_for_sampler(request: Request) -> dict[str, Any]:
        b = await _body(request, s.SaveWeightsForSampler, "save_weights_for_sampler")
        result = svc.save_weights_for_sampler(
            _owner(request),
            b.model_id,
            b.seq_id,
            b.path,
            b.sampling_session_seq_id,
            b.ttl_seconds,
            b.user_metadata,
            _slow(request),
        )
        return _future(result, b.model_id)

    @app.post(API + "/save_weights_external")
    async def save_weights_external(request: Request) -> dict[str, Any]:
        b = await _body(request, s.SaveWeightsExternal, "save_weights_external")
        result = svc.save_weights_external(
            _owner(request),
            b.model_id,
            b.seq_id,
            b.path,
            b.ttl_seconds,
            b.age_encryption_recipients,
            _slow(request),
        )
        return _future(result, b.model_id)

    @app.post(API + "/load_weights")
    async def load_weights(request: Request) -> dict[str, Any]:
        b = await _body(request, s.LoadWeights, "load_weights")
        owner = _owner(request)
        if b.session_id is not None:
            if b.model_seq_id is None:
                raise ApiError(400, "load_weights with session_id also needs model_seq_id.")
            owned_session(request, b.session_id)
            entry = svc.load_new_model(
                owner,
                b.session_id,
                b.model_seq_id,
                b.path,
                b.optimizer,
                b.user_metadata,
                _slow(request),
            )
            return _future(entry, f"{b.session_id}:train:{b.model_seq_id}")
        if b.model_id is None:
            raise ApiError(400, "load_weights needs either session_id + model_seq_id or model_id.")
        result = svc.load_into_model(
            owner, b.model_id, b.seq_id, b.path, b.optimizer, _slow(request)
        )
        return _future(result, b.model_id)

    @app.post(API + "/retrieve_future")
    async def retrieve_future(request: Request) -> Response:
        b = await _body(request, s.RetrieveFuture, "retrieve_future")
        entry = await svc.futures.wait(b.request_id, long_poll_s)
        if entry is None:
            return JSONResponse(
                {"detail": f"unknown or expired request_id {b.request_id!r}; submit it again"},
                status_code=410,
            )
        if not entry.done:
            return JSONResponse(
                {"type": "try_again", "request_id": b.request_id, "queue_state": "active"}
            )
        if entry.error is not None:
            return JSONResponse(entry.error)
        assert entry.payload is not None
        if entry.payload.proto is not None:
            return Response(entry.payload.proto, media_type="application/x-protobuf")
        return JSONResponse(entry.payload.json)

    @app.post(API + "/cancel_future")
    async def cancel_future() -> Response:
        return Response(status_code=204)

    # ---- sampling ------------------------------------------------------------------------
    @app.post(API + "/create_sampling_session")
    async def create_sampling_session(request: Request) -> dict[str, Any]:
        b = await _body(request, s.CreateSamplingSession, "create_sampling_session")
        owned_session(request, b.session_id)
        if b.base_model and not b.model_path:
            await svc.base_model_info(b.base_model)
        rec = svc.new_sampler(
            _owner(request), b.session_id, b.sampling_session_seq_id, b.base_model, b.model_path
        )
        return {"type": "create_sampling_session", "sampling_session_id": rec.id}

    @app.get(API + "/samplers/{sampler_id}")
    async def get_sampler(request: Request, sampler_id: str) -> dict[str, Any]:
        rec = svc.readable_sampler(_owner(request), sampler_id)
        return {"sampler_id": rec.id, "base_model": rec.base_model, "model_path": rec.model_path}

    @app.post(API + "/asample")
    async def asample(request: Request) -> dict[str, Any]:
        b = await _body(request, s.Sample, "asample")
        owner = _owner(request)
        if b.sampling_session_id:
            rec = svc.readable_sampler(owner, b.sampling_session_id)
        elif b.model_path:
            _, ck = svc.readable_checkpoint(owner, b.model_path)
            run = store.get_run(ck.run_id)
            base = b.base_model or (run.base_model if run else None)
            if base is None:
                raise ApiError(400, "asample: pass base_model; the checkpoint's run is gone.")
            rec = SamplerRecord("adhoc", owner, None, base, b.model_path, None, False, time.time())
        elif b.base_model:
            await svc.base_model_info(b.base_model)
            rec = SamplerRecord("adhoc", owner, None, b.base_model, None, None, False, time.time())
        else:
            raise ApiError(400, "asample needs sampling_session_id, model_path or base_model.")
        prompt: list[int] = []
        for i, chunk in enumerate(b.prompt.chunks):
            if chunk.type != "encoded_text" or chunk.tokens is None:
                raise ApiError(
                    400,
                    f"asample: prompt chunk {i} has type {chunk.type!r}; only encoded_text works.",
                )
            prompt.extend(chunk.tokens)
        if not prompt:
            raise ApiError(400, "asample: the prompt has no tokens.")
        last_n = b.prompt_logprobs_last_n
        if last_n is not None and last_n > len(prompt) - 1:
            raise ApiError(
                400,
                f"asample: prompt_logprobs_last_n={last_n} must be at most "
                f"len(prompt) - 1 = {len(prompt) - 1}.",
            )
        sp = b.sampling_params
        args = SampleArgs(
            prompt=prompt,
            num_samples=b.num_samples,
            max_tokens=sp.max_tokens if sp.max_tokens is not None else DEFAULT_MAX_TOKENS,
            temperature=sp.temperature,
            top_p=sp.top_p,
            top_k=sp.top_k,
            stop=sp.stop,
            seed=sp.seed,
            prompt_logprobs=bool(b.prompt_logprobs),
            prompt_logprobs_last_n=last_n,
        )
        entry = svc.sample(owner, rec, args, _slow(request))
        return {
            "request_id": entry.request_id,
            "sample_sequence_ids": [f"{entry.request_id}:{i}" for i in range(b.num_samples)],
        }

    # ---- runs & checkpoints --------------------------------------------------------------
    def checkpoint_json(ck: CheckpointRecord | None) -> dict[str, Any] | None:
        if ck is None:
            return None
        return {
            "checkpoint_id": ck.checkpoint_id,
            "checkpoint_type": ck.type,
            "time": _iso(ck.created),
            "tinker_path": ck.tinker_path,
            "size_bytes": ck.size_bytes,
            "public": ck.public,
            "user_metadata": ck.user_metadata,
            "expires_at": _iso(ck.expires_at),
        }

    def run_json(run: RunRecord) -> dict[str, Any]:
        return {
            "training_run_id": run.id,
            "base_model": run.base_model,
            "model_owner": run.owner,
            "is_lora": True,
            "corrupted": False,
            "lora_rank": run.lora.get("rank"),
            "last_request_time": _iso(run.last_request_time),
            "last_checkpoint": checkpoint_json(store.latest_checkpoint(run.id, "training")),
            "last_sampler_checkpoint": checkpoint_json(store.latest_checkpoint(run.id, "sampler")),
            "user_metadata": stringify(run.user_metadata),
        }

    def visible_run(request: Request, run_id: str) -> RunRecord:
        run = store.get_run(run_id)
        if run is None or (
            run.owner != _owner(request) and not store.run_has_public_checkpoint(run_id)
        ):
            raise not_found(f"training run {run_id!r}")
        return run

    @app.get(API + "/training_runs")
    async def list_training_runs(
        request: Request, limit: int = 20, offset: int = 0, access_scope: str = "owned"
    ) -> dict[str, Any]:
        _limit_offset(limit, offset)
        if access_scope not in ("owned", "accessible"):
            raise ApiError(400, f"access_scope={access_scope!r}; use 'owned' or 'accessible'.")
        store.sweep_expired()
        runs, total = store.list_runs(_owner(request), access_scope == "accessible", limit, offset)
        return {
            "training_runs": [run_json(r) for r in runs],
            "cursor": {"offset": offset, "limit": limit, "total_count": total},
        }

    @app.get(API + "/training_runs/{run_id}")
    async def get_training_run(request: Request, run_id: str) -> dict[str, Any]:
        return run_json(visible_run(request, run_id))

    @app.get(API + "/training_runs/{run_id}/checkpoints")
    async def list_checkpoints(request: Request, run_id: str) -> dict[str, Any]:
        run = visible_run(request, run_id)
        cks = store.list_run_checkpoints(run_id, public_only=run.owner != _owner(request))
        return {"checkpoints": [checkpoint_json(c) for c in cks]}

    @app.get(API + "/checkpoints")
    async def list_user_checkpoints(
        request: Request, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        _limit_offset(limit, offset)
        store.sweep_expired()
        cks, total = store.list_user_checkpoints(_owner(request), limit, offset)
        return {
            "checkpoints": [checkpoint_json(c) for c in cks],
            "cursor": {"offset": offset, "limit": limit, "total_count": total},
        }

    def checkpoint_id(segment: str, name: str) -> str:
        if segment not in SEGMENT_TO_TYPE:
            raise ApiError(
                400,
                f"checkpoint segment {segment!r}; use weights, sampler_weights or "
                "external_weights.",
            )
        return f"{segment}/{name}"

    @app.delete(API + "/training_runs/{run_id}/checkpoints/{segment}/{name}")
    async def delete_checkpoint(request: Request, run_id: str, segment: str, name: str) -> Response:
        cid = checkpoint_id(segment, name)
        svc.owned_checkpoint(_owner(request), run_id, cid)
        store.delete_checkpoint(run_id, cid)
        return Response(status_code=204)

    @app.post(API + "/training_runs/{run_id}/checkpoints/{segment}/{name}/publish")
    async def publish(request: Request, run_id: str, segment: str, name: str) -> Response:
        cid = checkpoint_id(segment, name)
        svc.owned_checkpoint(_owner(request), run_id, cid)
        store.set_public(run_id, cid, True)
        return Response(status_code=204)

    @app.delete(API + "/training_runs/{run_id}/checkpoints/{segment}/{name}/publish")
    async def unpublish(request: Request, run_id: str, segment: str, name: str) -> Response:
        cid = checkpoint_id(segment, name)
        svc.owned_checkpoint(_owner(request), run_id, cid)
        store.set_public(run_id, cid, False)
        return Response(status_code=204)

    @app.put(API + "/training_runs/{run_id}/checkpoints/{segment}/{name}/ttl")
    async def set_ttl(request: Request, run_id: str, segment: str, name: str) -> Response:
        cid = checkpoint_id(segment, name)
        b = await _body(request, s.Ttl, "ttl")
        check_ttl(b.ttl_seconds)
        svc.owned_checkpoint(_owner(request), run_id, cid)
        store.set_expiry(
            run_id, cid, None if b.ttl_seconds is None else time.time() + b.ttl_seconds
        )
        return Response(status_code=204)

    @app.get(
        API + "/training_runs/{run_id}/checkpoints/external_weights/{name}/external_weights_urls"
    )
    async def external_weights_urls(request: Request, run_id: str, name: str) -> dict[str, Any]:
        _, ck = svc.readable_checkpoint(
            _owner(request), f"tinker://{run_id}/external_weights/{name}"
        )
        urls, expires = svc.external_urls(str(request.base_url), ck)
        return {"urls": urls, "expires": _iso(expires)}

    @app.post(API + "/weights_info")
    async def weights_info(request: Request) -> dict[str, Any]:
        b = await _body(request, s.WeightsInfo, "weights_info")
        _, ck = svc.readable_checkpoint(_owner(request), b.tinker_path)
        run = store.get_run(ck.run_id)
        if run is None:
            raise not_found(f"training run of {b.tinker_path!r}")
        return {
            "base_model": run.base_model,
            "is_lora": True,
            "lora_rank": run.lora.get("rank"),
            "train_unembed": run.lora.get("train_unembed"),
            "train_mlp": run.lora.get("train_mlp"),
            "train_attn": run.lora.get("train_attn"),
        }

    # ---- signed downloads (no API key; the URL carries an HMAC and an expiry) --------------
    @app.get(SIGNED_PREFIX + "{signed_path:path}")
    async def download(
        request: Request, signed_path: str, exp: str = "", sig: str = ""
    ) -> Response:
        target = svc.signed_file(signed_path, exp, sig)
        size = target.stat().st_size
        start, end, status = 0, size - 1, 200
        header = request.headers.get("range")
        if header:
            parsed = _parse_range(header, size)
            if parsed is None:
                return JSONResponse(
                    {"detail": f"Range {header!r} is not satisfiable for a {size}-byte file."},
                    status_code=416,
                    headers={"Content-Range": f"bytes */{size}"},
                )
            start, end = parsed
            status = 206
        length = end - start + 1
        cut_at = length // 2 if length > 1 and svc.faults.should_cut(signed_path) else None
        headers = {"Content-Length": str(length), "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return StreamingResponse(
            _file_bytes(svc.stats, target, start, length, cut_at),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    return app


_DOWNLOAD_CHUNK = 1024 * 1024


class _CutTransfer(Exception):
    """Raised mid-stream to cut a download on purpose (fault injection)."""


async def _file_bytes(
    stats: ServiceStats, path: Any, start: int, length: int, cut_at: int | None
) -> AsyncIterator[bytes]:
    # Reads run on the event loop: a 1 MiB read from the page cache takes well under a
    # millisecond, whereas a sync generator costs a thread hop per chunk and capped the route.
    sent = 0
    limit = length if cut_at is None else cut_at
    with open(path, "rb") as fh:
        fh.seek(start)
        while sent < limit:
            chunk = fh.read(min(_DOWNLOAD_CHUNK, limit - sent))
            if not chunk:
                break
            sent += len(chunk)
            stats.bytes_served += len(chunk)
            yield chunk
    if cut_at is not None:
        stats.downloads_cut += 1
        raise _CutTransfer(f"download cut after {sent} of {length} bytes (fault injection)")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for one `bytes=` range, or None when unsatisfiable/malformed."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        if n == 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)
