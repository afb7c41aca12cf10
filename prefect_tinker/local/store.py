"""Durable state of the local service: SQLite (WAL) for records, plain files for checkpoints.

Layout under the data dir::

    tinker.db                         sessions, runs, checkpoints, samplers
    checkpoints/<run>/<segment>/<name>/   one dir per checkpoint (staged, then renamed)
    ephemeral/<sampler>/              adapters behind `save_weights_and_get_sampling_client`
    staging/                          half-written checkpoints (cleared at start)
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, tags TEXT,
    user_metadata TEXT, project_id TEXT, finished_at REAL, last_heartbeat REAL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, session_id TEXT, base_model TEXT NOT NULL,
    lora TEXT NOT NULL, user_metadata TEXT, created REAL NOT NULL, last_request_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL, type TEXT NOT NULL, owner TEXT NOT NULL,
    rel_dir TEXT NOT NULL, size_bytes INTEGER NOT NULL, public INTEGER NOT NULL DEFAULT 0,
    user_metadata TEXT, created REAL NOT NULL, expires_at REAL,
    encrypted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, checkpoint_id)
);
CREATE INDEX IF NOT EXISTS checkpoints_owner ON checkpoints (owner, created);
CREATE TABLE IF NOT EXISTS samplers (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, session_id TEXT, base_model TEXT NOT NULL,
    model_path TEXT, adapter_rel_dir TEXT, ephemeral INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


@dataclass
class SessionRecord:
    id: str
    owner: str
    created: float
    tags: list[str]
    user_metadata: dict[str, Any] | None
    project_id: str | None
    finished_at: float | None


@dataclass
class RunRecord:
    id: str
    owner: str
    session_id: str | None
    base_model: str
    lora: dict[str, Any]  # rank, seed, train_mlp, train_attn, train_unembed
    user_metadata: dict[str, Any] | None
    created: float
    last_request_time: float


@dataclass
class CheckpointRecord:
    run_id: str
    checkpoint_id: str  # "<segment>/<name>"
    type: str  # training | sampler | external
    owner: str
    rel_dir: str
    size_bytes: int
    public: bool
    user_metadata: dict[str, Any] | None
    created: float
    expires_at: float | None
    encrypted: bool = False

    @property
    def tinker_path(self) -> str:
        return f"tinker://{self.run_id}/{self.checkpoint_id}"


@dataclass
class SamplerRecord:
    id: str
    owner: str
    session_id: str | None
    base_model: str
    model_path: str | None
    adapter_rel_dir: str | None
    ephemeral: bool
    created: float


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Store:
    """One SQLite connection guarded by a lock, plus the checkpoint file tree.

    Example:
        >>> store = Store(Path(tmp))   # doctest: +SKIP
        >>> store.get_run("missing") is None   # doctest: +SKIP
        True
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir = data_dir / "staging"
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self.staging_dir.mkdir()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            data_dir / "tinker.db", check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._last_sweep = 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- files -----------------------------------------------------------------------------
    def staging(self) -> Path:
        """A fresh, empty staging directory for one checkpoint being written."""
        path = self.staging_dir / uuid.uuid4().hex
        path.mkdir()
        return path

    def checkpoint_rel_dir(self, run_id: str, checkpoint_id: str) -> str:
        segment, name = checkpoint_id.split("/", 1)
        return f"checkpoints/{_safe(run_id)}/{segment}/{_safe(name)}"

    def ephemeral_rel_dir(self, sampler_id: str) -> str:
        return f"ephemeral/{_safe(sampler_id)}"

    def commit_dir(self, staged: Path, rel_dir: str) -> Path:
        """Atomically move a staged directory into place, replacing what was there."""
        final = self.data_dir / rel_dir
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            trash = self.staging_dir / f"old-{uuid.uuid4().hex}"
            final.rename(trash)
            staged.rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staged.rename(final)
        return final

    def path_of(self, rel_dir: str) -> Path:
        return self.data_dir / rel_dir

    # ---- sessions --------------------------------------------------------------------------
    def create_session(
        self,
        owner: str,
        tags: list[str],
        user_metadata: dict[str, Any] | None,
        project_id: str | None,
    ) -> str:
        sid = str(uuid.uuid4())
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?,?,?,?,?,?,NULL,?)",
                (sid, owner, now, _dumps(tags), _dumps(user_metadata), project_id, now),
            )
        return sid

    def get_session(self, sid: str) -> SessionRecord | None:
        rows = self._query("SELECT * FROM sessions WHERE id=?", (sid,))
        if not rows:
            return None
        r = rows[0]
        return SessionRecord(
            r["id"],
            r["owner"],
            r["created"],
            _loads(r["tags"]) or [],
            _loads(r["user_metadata"]),
            r["project_id"],
            r["finished_at"],
        )

    def heartbeat(self, sid: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE sessions SET last_heartbeat=? WHERE id=?", (time.time(), sid))

    def finish_session(self, sid: str) -> bool:
        """Mark finished; True the first time."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE sessions SET finished_at=? WHERE id=? AND finished_at IS NULL",
                (time.time(), sid),
            )
            return cur.rowcount > 0

    def session_members(self, sid: str) -> tuple[list[str], list[str]]:
        runs = [
            r["id"]
            for r in self._query("SELECT id FROM runs WHERE session_id=? ORDER BY created", (sid,))
        ]
        samplers = [
            r["id"]
            for r in self._query(
                "SELECT id FROM samplers WHERE session_id=? ORDER BY created", (sid,)
            )
        ]
        return runs, samplers

    # ---- runs ------------------------------------------------------------------------------
    def add_run(self, run: RunRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                (
                    run.id,
                    run.owner,
                    run.session_id,
                    run.base_model,
                    _dumps(run.lora),
                    _dumps(run.user_metadata),
                    run.created,
                    run.last_request_time,
                ),
            )

    @staticmethod
    def _run(r: sqlite3.Row) -> RunRecord:
        return RunRecord(
            r["id"],
            r["owner"],
            r["session_id"],
            r["base_model"],
            _loads(r["lora"]),
            _loads(r["user_metadata"]),
            r["created"],
            r["last_request_time"],
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id=?", (run_id,))
        return self._run(rows[0]) if rows else None

    def touch_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET last_request_time=? WHERE id=?", (time.time(), run_id))

    def run_has_public_checkpoint(self, run_id: str) -> bool:
        rows = self._query(
            "SELECT 1 FROM checkpoints WHERE run_id=? AND public=1 AND "
            "(expires_at IS NULL OR expires_at>?) LIMIT 1",
            (run_id, time.time()),
        )
        return bool(rows)

    def list_runs(
        self, owner: str, accessible: bool, limit: int, offset: int
    ) -> tuple[list[RunRecord], int]:
        where = "owner=?"
        args: tuple[Any, ...] = (owner,)
        if accessible:
            where = (
                "owner=? OR id IN (SELECT run_id FROM checkpoints WHERE public=1 AND "
                "(expires_at IS NULL OR expires_at>?))"
            )
            args = (owner, time.time())
        total = self._query(f"SELECT COUNT(*) AS n FROM runs WHERE {where}", args)[0]["n"]
        rows = self._query(
            f"SELECT * FROM runs WHERE {where} ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [self._run(r) for r in rows], total

    # ---- checkpoints -----------------------------------------------------------------------
    @staticmethod
    def _ckpt(r: sqlite3.Row) -> CheckpointRecord:
        return CheckpointRecord(
            r["run_id"],
            r["checkpoint_id"],
            r["type"],
            r["owner"],
            r["rel_dir"],
            r["size_bytes"],
            bool(r["public"]),
            _loads(r["user_metadata"]),
            r["created"],
            r["expires_at"],
            bool(r["encrypted"]),
        )

    def add_checkpoint(self, ck: CheckpointRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    ck.run_id,
                    ck.checkpoint_id,
                    ck.type,
                    ck.owner,
                    ck.rel_dir,
                    ck.size_bytes,
                    int(ck.public),
                    _dumps(ck.user_metadata),
                    ck.created,
                    ck.expires_at,
                    int(ck.encrypted),
                ),
            )

    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> CheckpointRecord | None:
        """A live (not expired) checkpoint, or None."""
        rows = self._query(
            "SELECT * FROM checkpoints WHERE run_id=? AND checkpoint_id=? AND "
            "(expires_at IS NULL OR expires_at>?)",
            (run_id, checkpoint_id, time.time()),
        )
        return self._ckpt(rows[0]) if rows else None

    def list_run_checkpoints(self, run_id: str, public_only: bool) -> list[CheckpointRecord]:
        extra = " AND public=1" if public_only else ""
        rows = self._query(
            "SELECT * FROM checkpoints WHERE run_id=? AND (expires_at IS NULL OR expires_at>?)"
            f"{extra} ORDER BY created, rowid",
            (run_id, time.time()),
        )
        return [self._ckpt(r) for r in rows]

    def latest_checkpoint(self, run_id: str, type_: str) -> CheckpointRecord | None:
        rows = self._query(
            "SELECT * FROM checkpoints WHERE run_id=? AND type=? AND "
            "(expires_at IS NULL OR expires_at>?) ORDER BY created DESC, rowid DESC LIMIT 1",
            (run_id, type_, time.time()),
        )
        return self._ckpt(rows[0]) if rows else None

    def list_user_checkpoints(
        self, owner: str, limit: int, offset: int
    ) -> tuple[list[CheckpointRecord], int]:
        now = time.time()
        where = "owner=? AND (expires_at IS NULL OR expires_at>?)"
        total = self._query(f"SELECT COUNT(*) AS n FROM checkpoints WHERE {where}", (owner, now))[
            0
        ]["n"]
        rows = self._query(
            f"SELECT * FROM checkpoints WHERE {where} ORDER BY created DESC, rowid DESC "
            "LIMIT ? OFFSET ?",
            (owner, now, limit, offset),
        )
        return [self._ckpt(r) for r in rows], total

    def set_public(self, run_id: str, checkpoint_id: str, public: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE checkpoints SET public=? WHERE run_id=? AND checkpoint_id=?",
                (int(public), run_id, checkpoint_id),
            )

    def set_expiry(self, run_id: str, checkpoint_id: str, expires_at: float | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE checkpoints SET expires_at=? WHERE run_id=? AND checkpoint_id=?",
                (expires_at, run_id, checkpoint_id),
            )

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        with self._tx() as db:
            rows = db.execute(
                "SELECT rel_dir FROM checkpoints WHERE run_id=? AND checkpoint_id=?",
                (run_id, checkpoint_id),
            ).fetchall()
            db.execute(
                "DELETE FROM checkpoints WHERE run_id=? AND checkpoint_id=?",
                (run_id, checkpoint_id),
            )
        for r in rows:
            shutil.rmtree(self.data_dir / r["rel_dir"], ignore_errors=True)

    def sweep_expired(self, min_interval_s: float = 60.0) -> int:
        """Delete expired checkpoints' rows and files (at most once per `min_interval_s`)."""
        now = time.time()
        if now - self._last_sweep < min_interval_s:
            return 0
        self._last_sweep = now
        with self._tx() as db:
            rows = db.execute(
                "SELECT rel_dir FROM checkpoints WHERE expires_at IS NOT NULL AND expires_at<=?",
                (now,),
            ).fetchall()
            db.execute(
                "DELETE FROM checkpoints WHERE expires_at IS NOT NULL AND expires_at<=?", (now,)
            )
        for r in rows:
            shutil.rmtree(self.data_dir / r["rel_dir"], ignore_errors=True)
        return len(rows)

    # ---- samplers --------------------------------------------------------------------------
    def add_sampler(self, s: SamplerRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO samplers VALUES (?,?,?,?,?,?,?,?)",
                (
                    s.id,
                    s.owner,
                    s.session_id,
                    s.base_model,
                    s.model_path,
                    s.adapter_rel_dir,
                    int(s.ephemeral),
                    s.created,
                ),
            )

    def get_sampler(self, sampler_id: str) -> SamplerRecord | None:
        rows = self._query("SELECT * FROM samplers WHERE id=?", (sampler_id,))
        if not rows:
            return None
        r = rows[0]
        return SamplerRecord(
            r["id"],
            r["owner"],
            r["session_id"],
            r["base_model"],
            r["model_path"],
            r["adapter_rel_dir"],
            bool(r["ephemeral"]),
            r["created"],
        )

    def drop_ephemeral_samplers(self, session_id: str) -> list[str]:
        """Forget a finished session's ephemeral samplers and delete their adapter files."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, adapter_rel_dir FROM samplers WHERE session_id=? AND ephemeral=1",
                (session_id,),
            ).fetchall()
            db.execute("DELETE FROM samplers WHERE session_id=? AND ephemeral=1", (session_id,))
        for r in rows:
            if r["adapter_rel_dir"]:
                shutil.rmtree(self.data_dir / r["adapter_rel_dir"], ignore_errors=True)
        return [r["id"] for r in rows]
