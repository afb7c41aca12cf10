"""The durable store: expiry hides checkpoints everywhere and their files are swept."""

from __future__ import annotations

import time
from pathlib import Path

from prefect_tinker.local.store import CheckpointRecord, RunRecord, Store


def _checkpoint(store: Store, name: str, expires_at: float | None) -> CheckpointRecord:
    staged = store.staging()
    (staged / "adapter_model.safetensors").write_bytes(b"x" * 10)
    rel = store.checkpoint_rel_dir("s:train:0", f"weights/{name}")
    store.commit_dir(staged, rel)
    ck = CheckpointRecord(
        "s:train:0",
        f"weights/{name}",
        "training",
        "user-a",
        rel,
        10,
        False,
        None,
        time.time(),
        expires_at,
    )
    store.add_checkpoint(ck)
    return ck


def test_expired_checkpoints_vanish_and_survive_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    now = time.time()
    store.add_run(
        RunRecord("s:train:0", "user-a", "s", "Qwen/Qwen3-0.6B", {"rank": 4}, None, now, now)
    )
    live = _checkpoint(store, "live", None)
    gone = _checkpoint(store, "gone", now - 1)
    assert store.get_checkpoint("s:train:0", gone.checkpoint_id) is None
    assert [c.checkpoint_id for c in store.list_run_checkpoints("s:train:0", False)] == [
        "weights/live"
    ]
    assert store.list_user_checkpoints("user-a", 10, 0)[1] == 1
    assert store.sweep_expired(min_interval_s=0) == 1
    assert not (tmp_path / gone.rel_dir).exists() and (tmp_path / live.rel_dir).exists()
    store.close()

    reopened = Store(tmp_path)  # a restart keeps the rest
    assert reopened.get_checkpoint("s:train:0", "weights/live") is not None
    assert reopened.get_run("s:train:0").lora == {"rank": 4}
    reopened.close()


def test_sequencer_orders_by_seq_id_and_skips_a_gap_that_never_fills() -> None:
    from prefect_tinker.local.futures import ComputeWorker, FutureTable, Payload, Sequencer

    futures = FutureTable()
    worker = ComputeWorker(futures)
    seq = Sequencer(worker, gap_timeout_s=0.2)
    seq.open("m", 1)
    applied: list[int] = []

    def job(n: int):
        def run() -> Payload:
            applied.append(n)
            return Payload(json={"n": n})

        return run

    entries = {}
    for n in (3, 4, 2, 1, 7):  # 5 and 6 never come
        entries[n] = futures.new("OptimStep")
        seq.submit("m", n, job(n), entries[n])
    done = worker.call(lambda: None)
    done.result(timeout=10)
    assert applied == [1, 2, 3, 4]
    assert seq.seen("m", 3) == entries[3].request_id
    import asyncio

    entry = asyncio.run(futures.wait(entries[7].request_id, timeout_s=10))
    assert entry is not None and entry.done and applied == [1, 2, 3, 4, 7]
    seq.stop()
    worker.stop()
