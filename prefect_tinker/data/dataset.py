"""`load_dataset`: a chat JSONL file → a `ChatDataset` of Datums with deterministic batches."""

from __future__ import annotations

import gc
import hashlib
import itertools
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prefect_tinker.data.datums import RenderedChunk, datums_of, render_lines
from prefect_tinker.data.records import iter_lines
from prefect_tinker.errors import ConfigurationError, DatasetError

if TYPE_CHECKING:
    import tinker

    from prefect_tinker.models.renderers import Renderer, TrainOn

CHUNK_LINES = 512
PARALLEL_MIN_BYTES = 4 << 20  # below this, starting workers costs more than it saves


@dataclass
class ChatDataset:
    """Datums of a chat dataset, split into train and holdout, batched per epoch.

    Example:
        >>> ds = load_dataset("chat.jsonl", renderer=get_renderer(None, "Qwen/Qwen3-8B"),
        ...                   max_length=2048)
        >>> first_batch = ds.batches(batch_size=8, epoch=0, seed=0)[0]
    """

    train: list[tinker.Datum] = field(repr=False)
    holdout: list[tinker.Datum] = field(repr=False)
    fingerprint: str
    records: int  # conversations read
    dropped: int = 0  # sequences with nothing to train on after truncation
    source: str = ""

    def __len__(self) -> int:
        return len(self.train)

    @property
    def trained_tokens(self) -> int:
        """Target tokens with a non-zero weight across the train split."""
        return sum(
            int(np.count_nonzero(d.loss_fn_inputs["weights"].to_numpy())) for d in self.train
        )

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list[tinker.Datum]]:
        """The train split shuffled by (seed, epoch), in full batches (a remainder is dropped).

        The same arguments always give the same batches, on any machine.
        """
        if batch_size <= 0:
            raise ConfigurationError(f"batch_size must be positive, got {batch_size}.")
        order = np.random.default_rng([seed, epoch]).permutation(len(self.train)).tolist()
        full = len(order) // batch_size
        return [
            [self.train[i] for i in order[b * batch_size : (b + 1) * batch_size]]
            for b in range(full)
        ]


def _fingerprint_prefix(renderer: Renderer, max_length: int, train_on: str) -> bytes:
    tokenizer = getattr(renderer.tokenizer, "name", "")
    settings = f"renderer={renderer.name};tokenizer={tokenizer};max_length={max_length}"
    return f"{settings};train_on={train_on}\n".encode()


def _chunks(
    lines: Iterator[tuple[int, bytes]], digest: hashlib._Hash
) -> Iterator[list[tuple[int, bytes]]]:
    while True:
        chunk = list(itertools.islice(lines, CHUNK_LINES))
        if not chunk:
            return
        for _line, raw in chunk:
            digest.update(raw)
        yield chunk


_worker_state: dict[str, object] = {}


def _init_worker(renderer: Renderer, train_on: str, max_length: int, path: str) -> None:
    _worker_state.update(renderer=renderer, train_on=train_on, max_length=max_length, path=path)


def _render_in_worker(lines: list[tuple[int, bytes]]) -> RenderedChunk:
    s = _worker_state
    return render_lines(
        lines,
        s["renderer"],
        train_on=s["train_on"],
        max_length=s["max_length"],
        path=s["path"],  # type: ignore[arg-type]
    )


def _auto_workers(path: Path) -> int:
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    if cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    try:
        size = path.stat().st_size
    except OSError:
        return 1
    # Not gated on the load average: it trails the last minute (a load that just ended still
    # counts) and measured no better. On a busy machine the forked workers gained little but
    # did not lose; on idle cores two of them render a 10,000-conversation file ~1.45x faster.
    workers = min(cores, 4)
    return workers if size >= PARALLEL_MIN_BYTES else 1


def _rendered_chunks(
    path: Path,
    renderer: Renderer,
    train_on: str,
    max_length: int,
    workers: int,
    digest: hashlib._Hash,
) -> Iterator[RenderedChunk]:
    chunks = _chunks(iter_lines(path), digest)
    if workers <= 1:
        for chunk in chunks:
            yield render_lines(chunk, renderer, train_on=train_on, max_length=max_length, path=path)  # type: ignore[arg-type]
        return
    # fork: the renderer (a native object) is inherited rather than pickled, and workers start
    # in milliseconds. Chunks come back in file order.
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, _init_worker, (renderer, train_on, max_length, str(path))) as pool:
        yield from pool.imap(_render_in_worker, chunks)


def _holdout_mask(records: int, fraction: float, seed: int) -> np.ndarray:
    mask = np.zeros(records, dtype=bool)
    if fraction <= 0 or records < 2:
        return mask
    count = min(records - 1, max(1, round(records * fraction)))
    chosen = np.random.default_rng([seed, 0x401D]).permutation(records)[:count]
    mask[chosen] = True
    return mask


def load_dataset(
    path: str | Path,
    *,
    renderer: Renderer,
    max_length: int,
    train_on: TrainOn = "last_assistant",
    holdout_fraction: float = 0.0,
    seed: int = 0,
    workers: int | None = None,
) -> ChatDataset:
    """Read a chat JSONL file into Datums (next-token shifted, weighted per `train_on`).

    The file is streamed; `workers` > 1 renders chunks in forked processes (None = decide from
    the file size and cores). `holdout_fraction` of the conversations (chosen by `seed`) go to
    `holdout`. The fingerprint is the sha256 of the file's bytes, the renderer and its tokenizer,
    `max_length`, `train_on` (and the holdout split when there is one).

    Raises DatasetError for a malformed line (with its number) or a dataset with no examples.

    Example:
        >>> ds = load_dataset("chat.jsonl", renderer=get_renderer(None, "Qwen/Qwen3-8B"),
        ...                   max_length=4096, holdout_fraction=0.1)
        >>> len(ds), len(ds.holdout), ds.fingerprint[:12]
    """
    path = Path(path).expanduser()
    if max_length < 2:
        raise ConfigurationError(f"max_length must be at least 2 tokens, got {max_length}.")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ConfigurationError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}.")
    if not path.is_file():
        raise DatasetError(f"dataset '{path}' does not exist or is not a file.")
    digest = hashlib.sha256(_fingerprint_prefix(renderer, max_length, train_on))
    if holdout_fraction > 0:
        digest.update(f"holdout={holdout_fraction};seed={seed}\n".encode())
    count = workers if workers is not None else _auto_workers(path)
    rendered: list[tuple[list[tinker.Datum], np.ndarray]] = []
    records = dropped = 0
    # Building many small, acyclic objects makes the cycle collector rescan an ever larger
    # heap; pausing it while loading roughly halves the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for chunk in _rendered_chunks(path, renderer, train_on, max_length, count, digest):
            rendered.append((datums_of(chunk), chunk.records + records))
            records += chunk.record_count
            dropped += chunk.dropped
    finally:
        if collecting:
            gc.enable()
    if records == 0:
        raise DatasetError(
            f"dataset '{path}' has no conversations (it is empty or only blank lines)."
        )
    held = _holdout_mask(records, holdout_fraction, seed)
    train: list[tinker.Datum] = []
    holdout: list[tinker.Datum] = []
    for datums, record_ids in rendered:
        for datum, record in zip(datums, record_ids.tolist(), strict=True):
            (holdout if held[record] else train).append(datum)
    if not train:
        raise DatasetError(
            f"dataset '{path}' has no trainable example: {dropped} sequence(s) had no assistant "
            f"tokens within max_length={max_length}; raise max_length or check "
            f"train_on={train_on!r}."
        )
    return ChatDataset(train, holdout, digest.hexdigest(), records, dropped, str(path))
