"""A tiny real HTTP file server with Range support and injectable faults, plus a fake signer.

It stands in for the signed-URL route of a Tinker service in library tests that do not need
the whole local service.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, unquote, urlparse

from threaded_server import LocalHTTPServer


@dataclass
class FileServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)  # names to cut half-way, once each
    corrupt_once: set[str] = field(default_factory=set)  # names to serve with a flipped byte once
    gone: set[str] = field(default_factory=set)  # names answered with 404
    ignore_range: bool = False
    send_sha256: bool = False
    bytes_served: int = 0
    requests: Counter = field(default_factory=Counter)
    range_requests: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: FileServerState

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlparse(self.path)
        name = unquote(url.path.removeprefix("/f/"))
        exp = float(parse_qs(url.query).get("exp", ["0"])[0])
        st = self.state
        with st.lock:
            st.requests[name] += 1
        if exp < datetime.now(UTC).timestamp():
            return self._plain(403, b"expired")
        if name in st.gone or name not in st.files:
            return self._plain(404, b"gone")
        data = st.files[name]
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            with st.lock:
                st.range_requests[name] += 1
        body = data[start:]
        with st.lock:
            cut = name in st.cut_once
            st.cut_once.discard(name)
            corrupt = name in st.corrupt_once
            st.corrupt_once.discard(name)
        if corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if st.send_sha256:
            self.send_header("X-Checksum-SHA256", hashlib.sha256(data).hexdigest())
        self.end_headers()
        payload = body[: len(body) // 2] if cut else body
        self.wfile.write(payload)
        with st.lock:
            st.bytes_served += len(payload)
        if cut:
            self.close_connection = True  # the socket closes with the body half sent

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FileServer(LocalHTTPServer):
    """Serve `state.files` at `http://127.0.0.1:PORT/f/<name>?exp=<unix time>`."""

    state: FileServerState

    def __init__(self) -> None:
        super().__init__(_Handler, FileServerState())


class FakeRest:
    """The part of `tinker.RestClient` a download uses: signs URLs for every served file."""

    def __init__(self, server: FileServer, *, lifetimes_s: tuple[float, ...] = (3600.0,)) -> None:
        self.server = server
        self.lifetimes_s = list(lifetimes_s)  # one per signing; the last one repeats
        self.sign_calls = 0
        self.extra_names: list[str] = []

    def get_external_weights_urls(self, tinker_path: str) -> SimpleNamespace:
        lifetime = self.lifetimes_s[min(self.sign_calls, len(self.lifetimes_s) - 1)]
        self.sign_calls += 1
        expires = datetime.now(UTC) + timedelta(seconds=lifetime)
        names = list(self.server.state.files) + self.extra_names
        urls = {n: f"{self.server.url}/f/{quote(n)}?exp={expires.timestamp()}" for n in names}
        return SimpleNamespace(result=lambda: SimpleNamespace(urls=urls, expires=expires))
