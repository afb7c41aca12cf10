"""HMAC-signed, expiring download URLs for checkpoint files (fetched without an API key)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

SIGNED_PREFIX = "/signed/"
DEFAULT_URL_TTL_S = 3600


def load_or_create_secret(path: Path) -> bytes:
    """The service's signing secret, generated once and kept (mode 600) so URLs survive restarts."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex())
    return value


class UrlSigner:
    """Signs `<run_id>/<segment>/<name>/<file>` with an expiry.

    Example:
        >>> s = UrlSigner(b"k" * 32)
        >>> q = s.sign("run:train:0/external_weights/hf/a.json", expires_at=2_000_000_000)
        >>> s.verify("run:train:0/external_weights/hf/a.json", 2_000_000_000, q["sig"], now=0)
        True
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, path: str, expires_at: int) -> str:
        msg = f"{path}\n{expires_at}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, path: str, expires_at: int) -> dict[str, str]:
        return {"exp": str(expires_at), "sig": self._mac(path, expires_at)}

    def url(self, base_url: str, path: str, expires_at: int) -> str:
        q = self.sign(path, expires_at)
        return f"{base_url.rstrip('/')}{SIGNED_PREFIX}{quote(path)}?exp={q['exp']}&sig={q['sig']}"

    def verify(self, path: str, expires_at: int, sig: str, now: float | None = None) -> bool:
        if (now if now is not None else time.time()) > expires_at:
            return False
        # Compare bytes: compare_digest refuses non-ASCII str, and a hostile URL may carry one.
        return hmac.compare_digest(self._mac(path, expires_at).encode(), sig.encode())
