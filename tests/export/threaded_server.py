"""A real HTTP server on a free local port, served from a daemon thread inside a `with` block.

The test servers beside this file (`fileserver.FileServer`, `hubserver.HubServer`) are this
with their own request handler and shared state.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalHTTPServer:
    """Serve `handler` (given `state` as a class attribute) at `url` while inside `with`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], state: Any) -> None:
        self.state = state
        bound = type("Handler", (handler,), {"state": state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
