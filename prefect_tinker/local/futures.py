"""Futures of the local service: one compute worker, per-model ordering, long-poll retrieval.

* :class:`ComputeWorker` runs every engine call on ONE thread (the engine is not thread-safe).
* :class:`Sequencer` hands a model's requests to the worker strictly in `seq_id` order,
  buffering chunks that arrive early (parallel fwd/bwd chunks arrive e.g. as 2, 3, 4, 1).
* :class:`FutureTable` keeps request results for re-fetches and lets `retrieve_future`
  long-poll without a thread per waiter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect_tinker.errors import InvalidTinkerPath
from prefect_tinker.local.engine_types import EngineError
from prefect_tinker.local.faults import ServiceStats

logger = logging.getLogger(__name__)

RESULT_RETENTION_S = 900.0


class UserError(ValueError):
    """A request that can never succeed as sent; reported with category 'user'."""


@dataclass
class Payload:
    """A finished result: JSON (a dict) or protobuf bytes."""

    json: dict[str, Any] | None = None
    proto: bytes | None = None


@dataclass
class FutureEntry:
    request_id: str
    request_type: str
    not_before: float
    done: bool = False
    payload: Payload | None = None
    error: dict[str, str] | None = None
    completed_at: float = 0.0
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )


class FutureTable:
    """Request ids → results. Thread-safe; waiting is asyncio-native."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, FutureEntry] = {}
        self._last_prune = time.monotonic()

    def new(self, request_type: str, *, delay_s: float = 0.0) -> FutureEntry:
        prefix = request_type.lower()
        entry = FutureEntry(
            request_id=f"{prefix}-{uuid.uuid4().hex}",
            request_type=request_type,
            not_before=time.monotonic() + delay_s,
        )
        with self._lock:
            self._entries[entry.request_id] = entry
        self._prune()
        return entry

    def get(self, request_id: str) -> FutureEntry | None:
        with self._lock:
            return self._entries.get(request_id)

    def resolve(
        self, entry: FutureEntry, payload: Payload | None, error: dict[str, str] | None
    ) -> None:
        """Complete `entry` (no earlier than its `not_before`)."""
        wait = entry.not_before - time.monotonic()
        if wait > 0:
            timer = threading.Timer(wait, self._finish, (entry, payload, error))
            timer.daemon = True
            timer.start()
        else:
            self._finish(entry, payload, error)

    def _finish(
        self, entry: FutureEntry, payload: Payload | None, error: dict[str, str] | None
    ) -> None:
        with self._lock:
            if entry.done:
                return
            entry.payload, entry.error = payload, error
            entry.done = True
            entry.completed_at = time.monotonic()
            waiters, entry.waiters = entry.waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_set_done, fut)

    async def wait(self, request_id: str, timeout_s: float) -> FutureEntry | None:
        """The entry once done, or still pending after `timeout_s`; None if unknown."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get(request_id)
            if entry is None or entry.done:
                return entry
            fut: asyncio.Future[None] = loop.create_future()
            entry.waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            with self._lock:
                entry.waiters = [w for w in entry.waiters if w[1] is not fut]
        return entry

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 30:
            return
        self._last_prune = now
        with self._lock:
            stale = [
                rid
                for rid, e in self._entries.items()
                if e.done and now - e.completed_at > RESULT_RETENTION_S
            ]
            for rid in stale:
                del self._entries[rid]


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


Job = Callable[[], Payload]


class ComputeWorker:
    """The single thread that runs all engine work, in submission order."""

    def __init__(self, futures: FutureTable, stats: ServiceStats | None = None) -> None:
        self._futures = futures
        self._stats = stats
        self._queue: queue.Queue[tuple[Callable[[], Any], Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tinker-compute", daemon=True)
        self._thread.start()

    def submit(self, job: Job, entry: FutureEntry) -> None:
        """Run `job` for a client future; its outcome resolves `entry`."""
        self._queue.put((job, entry))

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run `fn` on the worker for the service itself (e.g. capabilities)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, target = item
            if isinstance(target, concurrent.futures.Future):
                try:
                    target.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    target.set_exception(exc)
                continue
            started = time.perf_counter()
            try:
                payload = fn()
            except UserError as exc:
                self._futures.resolve(target, None, {"error": str(exc), "category": "user"})
            except Exception as exc:
                category = "user" if _is_engine_user_error(exc) else "server"
                if category == "server":
                    logger.exception("request %s failed", target.request_id)
                msg = str(exc) or type(exc).__name__
                self._futures.resolve(target, None, {"error": msg, "category": category})
            else:
                self._futures.resolve(target, payload, None)
            finally:
                if self._stats is not None:
                    self._stats.compute_s[target.request_type] += time.perf_counter() - started


def _is_engine_user_error(exc: BaseException) -> bool:
    return isinstance(exc, EngineError | UserError | InvalidTinkerPath)


class Sequencer:
    """Releases each model's requests to the worker in `seq_id` order.

    A seq_id that never arrives (the client used it up on a request the service rejected
    before it could be ordered) would hold back every later request; after `gap_timeout_s`
    the gap is skipped.
    """

    def __init__(
        self, worker: ComputeWorker, stats: ServiceStats | None = None, gap_timeout_s: float = 120.0
    ) -> None:
        self._worker = worker
        self._stats = stats
        self._gap_timeout_s = gap_timeout_s
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._pending: dict[str, dict[int, tuple[Job, FutureEntry]]] = {}
        self._seen: dict[tuple[str, int], str] = {}
        self._stalled_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="tinker-seq-gaps", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self._gap_timeout_s / 2)):
            now = time.monotonic()
            with self._lock:
                for model_id, since in list(self._stalled_since.items()):
                    if now - since < self._gap_timeout_s:
                        continue
                    queue_ = self._pending.get(model_id) or {}
                    if queue_:
                        logger.warning(
                            "model %s: seq %s never arrived; continuing at %s",
                            model_id,
                            self._next.get(model_id),
                            min(queue_),
                        )
                        self._next[model_id] = min(queue_)
                        self._release(model_id)
                    else:
                        self._stalled_since.pop(model_id, None)

    def _release(self, model_id: str) -> None:
        """Hand every consecutive buffered request to the worker (lock held)."""
        nxt = self._next[model_id]
        queue_ = self._pending[model_id]
        while nxt in queue_:
            job_, entry_ = queue_.pop(nxt)
            self._worker.submit(job_, entry_)
            nxt += 1
        self._next[model_id] = nxt
        if queue_:
            self._stalled_since.setdefault(model_id, time.monotonic())
        else:
            self._stalled_since.pop(model_id, None)

    def open(self, model_id: str, next_seq: int) -> None:
        with self._lock:
            self._next[model_id] = next_seq
            self._pending.setdefault(model_id, {})

    def close(self, model_id: str) -> list[FutureEntry]:
        """Stop accepting requests for `model_id`; returns the buffered ones, never run."""
        with self._lock:
            self._next.pop(model_id, None)
            self._stalled_since.pop(model_id, None)
            return [entry for _, entry in self._pending.pop(model_id, {}).values()]

    def is_open(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._next

    def seen(self, model_id: str, seq_id: int | None) -> str | None:
        """The request id already given to this (model, seq_id), for resubmissions."""
        if seq_id is None:
            return None
        with self._lock:
            return self._seen.get((model_id, seq_id))

    def submit(self, model_id: str, seq_id: int | None, job: Job, entry: FutureEntry) -> None:
        with self._lock:
            nxt = self._next.get(model_id)
            if seq_id is not None:
                self._seen[(model_id, seq_id)] = entry.request_id
            if nxt is None or seq_id is None or seq_id < nxt:
                # Unordered (or late) request: apply in arrival order.
                self._worker.submit(job, entry)
                return
            self._pending[model_id][seq_id] = (job, entry)
            if seq_id != nxt and self._stats is not None:
                self._stats.reordered += 1
            self._release(model_id)
