"""API keys of the local service: which keys are accepted and who owns what."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from prefect_tinker.errors import ConfigurationError

KEY_PREFIX = "tml-"
DEFAULT_KEY_FILE = "api_key"


def owner_of(api_key: str) -> str:
    """A stable, non-secret owner name for a key (shown as `model_owner`)."""
    return "user-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


class KeyRing:
    """The set of accepted keys, checked in constant time per key."""

    def __init__(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not keys:
            raise ConfigurationError("the local service needs at least one API key ('tml-...').")
        for key in keys:
            if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) < 8:
                raise ConfigurationError(
                    "every local-service API key must be a string starting with 'tml-' and at "
                    "least 8 characters long; pass e.g. --api-key tml-mykey."
                )
        self._keys = {hashlib.sha256(k.encode()).digest(): owner_of(k) for k in keys}

    def owner(self, api_key: str | None) -> str | None:
        """The owner of `api_key`, or None when the key is not accepted."""
        if not api_key:
            return None
        return self._keys.get(hashlib.sha256(api_key.encode()).digest())


def load_or_create_default_key(data_dir: Path) -> str:
    """The data dir's own key (`tml-local-<random>`), generated once and stored with mode 600."""
    path = data_dir / DEFAULT_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "tml-local-" + secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
