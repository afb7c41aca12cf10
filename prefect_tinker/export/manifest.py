"""The download manifest: which checkpoint a directory holds, and each file's size and sha256.

A download writes `manifest.json` next to the files; a later download of the same tinker
path into the same directory checks it and transfers nothing when every file still matches.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from prefect_tinker.errors import UnsafePathError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One downloaded file: its path relative to the directory, size in bytes and sha256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass
class Manifest:
    """What a download directory holds.

    `bytes_transferred` is what the download call that returned this manifest moved over the
    network (0 when the directory already matched); it is not stored in `manifest.json`.

    Example:
        >>> m = Manifest("tinker://r:train:0/external_weights/hf", (FileEntry("a", 1, "00"),))
        >>> m.total_size
        1
    """

    tinker_path: str
    files: tuple[FileEntry, ...]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    bytes_transferred: int = field(default=0, compare=False)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    def to_dict(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "tinker_path": self.tinker_path,
            "created_at": self.created_at,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        files = tuple(
            FileEntry(safe_relpath(f["path"]), int(f["size"]), str(f["sha256"]))
            for f in data["files"]
        )
        return cls(str(data["tinker_path"]), files, str(data.get("created_at", "")))

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest | None:
        """The manifest in `directory`, or None when it has none (or an unreadable one)."""
        path = Path(directory) / MANIFEST_NAME
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def bad_files(self, directory: Path) -> list[str]:
        """Paths whose file is missing or whose size or sha256 differ from the manifest."""
        bad = []
        for entry in self.files:
            target = Path(directory) / entry.path
            intact = (
                target.is_file()
                and target.stat().st_size == entry.size
                and sha256_file(target) == entry.sha256
            )
            if not intact:
                bad.append(entry.path)
        return bad


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relpath(name: str) -> str:
    """`name` if it is a plain relative path that stays inside its directory, else raise.

    Refuses absolute paths, drive letters, backslashes, `.`/`..`/empty segments, NUL and
    control characters, and the manifest's own name.

    Example:
        >>> safe_relpath("adapter_model.safetensors")
        'adapter_model.safetensors'
    """
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty"
    elif "\\" in name:
        problem = "contains a backslash"
    elif name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        problem = "is absolute"
    elif any(ord(c) < 32 for c in name):
        problem = "contains control characters"
    elif any(part in {"", ".", ".."} for part in name.split("/")):
        problem = "has an empty, '.' or '..' segment"
    elif name == MANIFEST_NAME:
        problem = f"would overwrite {MANIFEST_NAME}"
    if problem:
        raise UnsafePathError(
            f"checkpoint file name {name!r} {problem}; refusing to write it. The checkpoint "
            "may be corrupted or malicious: check its source before downloading it."
        )
    return str(PurePosixPath(name))
