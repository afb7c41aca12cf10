"""Run the local Tinker service in-process: uvicorn on a background thread.

Example:
    >>> from prefect_tinker.local import LocalTinker
    >>> with LocalTinker(data_dir="/tmp/tinker-local") as svc:   # doctest: +SKIP
    ...     client = tinker.ServiceClient(base_url=svc.base_url, api_key=svc.api_key)
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect_tinker.errors import ConfigurationError
from prefect_tinker.local.auth import KeyRing, load_or_create_default_key
from prefect_tinker.local.faults import FaultConfig, FaultInjector, ServiceStats
from prefect_tinker.local.signing import UrlSigner, load_or_create_secret

SERVER_FILE = "server.json"


def tinker_home() -> Path:
    """`$PREFECT_TINKER_HOME`, by default `~/.prefect-tinker`."""
    return Path(
        os.environ.get("PREFECT_TINKER_HOME") or Path.home() / ".prefect-tinker"
    ).expanduser()


def default_data_dir() -> Path:
    """Where the local service keeps its data unless told otherwise."""
    return tinker_home() / "local"


def engine_cache_dir() -> Path:
    """Base-model weights shared by every local service of this user."""
    return tinker_home() / "cache" / "engine"


class LocalTinker:
    """The local Tinker-compatible service, served from a background thread of this process.

    `api_keys` are the accepted `X-API-Key` values (the first one is `api_key`); pass
    `api_keys=None` to use the data dir's own generated key. `port=0` picks a free port.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        api_keys: Sequence[str] | None = ("tml-local",),
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        fwdbwd_max_chunk_len: int = 1024,
        long_poll_s: float = 20.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
        if api_keys is None:
            api_keys = (load_or_create_default_key(self.data_dir),)
        self._keyring = KeyRing(api_keys)
        self.api_key: str = api_keys[0]
        self.host = host
        self.port = port
        self._injector = FaultInjector(faults)
        self.stats = ServiceStats()
        self._fwdbwd_max_chunk_len = fwdbwd_max_chunk_len
        self._long_poll_s = long_poll_s
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._service: Any = None
        self._store: Any = None
        self.base_url = ""

    @property
    def faults(self) -> FaultConfig:
        return self._injector.config

    @faults.setter
    def faults(self, value: FaultConfig | None) -> None:
        self._injector.config = value

    @property
    def fwdbwd_max_chunk_len(self) -> int:
        """Datums per forward_backward request that clients are told to use (new clients)."""
        return self._fwdbwd_max_chunk_len

    @fwdbwd_max_chunk_len.setter
    def fwdbwd_max_chunk_len(self, value: int) -> None:
        self._fwdbwd_max_chunk_len = value
        if self._service is not None:
            self._service.fwdbwd_max_chunk_len = value

    def start(self) -> LocalTinker:
        """Open the store, bind the port and serve; returns once requests are answered."""
        if self._thread is not None:
            return self
        import uvicorn

        from prefect_tinker.local.app import Gate, build_app
        from prefect_tinker.local.service import Service
        from prefect_tinker.local.store import Store

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.data_dir)
        signer = UrlSigner(load_or_create_secret(self.data_dir / "signing.key"))
        self._service = Service(
            self._store,
            signer,
            engine_cache_dir(),
            self._injector,
            self.stats,
            fwdbwd_max_chunk_len=self._fwdbwd_max_chunk_len,
        )
        app = Gate(
            build_app(self._service, self._keyring, long_poll_s=self._long_poll_s),
            self._keyring,
            self._injector,
            self.stats,
        )
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"cannot listen on {self.host}:{self.port} ({exc}); pick another --port (0: any)."
            ) from exc
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=3,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="tinker-local-http",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local Tinker service did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, finish queued compute and close the store."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._service is not None:
            self._service.close()
        if self._store is not None:
            self._store.close()
        self._server = self._thread = self._service = self._store = None

    def write_server_file(self) -> None:
        """Record this service (pid + URL) so other processes can attach to it."""
        path = self.data_dir / SERVER_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "base_url": self.base_url}))
        tmp.replace(path)

    def remove_server_file(self) -> None:
        path = self.data_dir / SERVER_FILE
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> LocalTinker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_lock = threading.Lock()
_in_process: dict[Path, LocalTinker] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(base_url: str, api_key: str) -> bool:
    import httpx

    try:
        with httpx.Client(timeout=3, trust_env=False) as client:
            r = client.post(
                f"{base_url}/api/v1/client/config", headers={"X-API-Key": api_key}, json={}
            )
            return r.status_code == 200
    except httpx.HTTPError:
        return False


def ensure_local_service(data_dir: Path | None = None) -> tuple[str, str]:
    """`(base_url, api_key)` of a running local service for `data_dir`, starting one if needed.

    Attaches to a live service recorded in `data_dir/server.json` that accepts the data dir's
    key; otherwise starts one in this process (daemon thread, lives as long as the process).

    Example:
        >>> base_url, api_key = ensure_local_service()   # doctest: +SKIP
    """
    root = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    with _lock:
        running = _in_process.get(root)
        if running is not None:
            return running.base_url, running.api_key
        key = load_or_create_default_key(root)
        try:
            recorded = json.loads((root / SERVER_FILE).read_text())
            if _alive(int(recorded["pid"])) and _answers(recorded["base_url"], key):
                return recorded["base_url"], key
        except (OSError, ValueError, KeyError, TypeError):
            pass
        svc = LocalTinker(root, api_keys=(key,)).start()
        svc.write_server_file()
        _in_process[root] = svc
        return svc.base_url, svc.api_key
