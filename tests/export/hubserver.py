"""A local HTTP server that answers the Hugging Face Hub endpoints `huggingface_hub` calls
for create_repo / list_repo_refs / model_info / create_commit / create_tag, and records every
request (method, path, headers, body) so tests can assert on them.

The endpoint set was found by pointing `HfApi(endpoint=...)` at a recorder and adding what it
asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

import yaml
from threaded_server import LocalHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Repo:
    private: bool
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (oid, files)
    tags: dict[str, str] = field(default_factory=dict)

    def files_at(self, revision: str | None) -> tuple[str | None, dict[str, bytes]]:
        if revision in (None, "main"):
            return self.commits[-1] if self.commits else (None, {})
        oid = self.tags.get(revision, revision)
        for commit_oid, files in self.commits:
            if commit_oid == oid:
                return commit_oid, files
        raise KeyError(revision)


@dataclass
class HubState:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[str]:
        return [f"{r.method} {urlparse(r.path).path}" for r in self.requests]


def _card_data(readme: bytes | None) -> dict | None:
    if not readme:
        return None
    match = re.match(r"\A---\s*\n(.*?)\n---\s*\n", readme.decode(), re.S)
    return yaml.safe_load(match[1]) if match else None


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _read(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _base(self) -> str:
        return f"http://{self.headers['Host']}"

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self._read()
        with self.state.lock:
            self.state.requests.append(
                Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
            )
        path = unquote(urlparse(self.path).path)
        m = self.command
        st = self.state
        if m == "POST" and path == "/api/repos/create":
            data = json.loads(body)
            repo_id = (
                f"{data['organization']}/{data['name']}"
                if data.get("organization")
                else (data["name"])
            )
            if repo_id in st.repos:
                return self._json(
                    409,
                    {
                        "error": "You already created this model repo",
                        "url": f"{self._base()}/{repo_id}",
                    },
                )
            st.repos[repo_id] = Repo(private=data.get("visibility", "public") != "public")
            return self._json(200, {"url": f"{self._base()}/{repo_id}", "name": repo_id})
        if m == "POST" and path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        match = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(.*))?$", path)
        if not match or match[1] not in st.repos:
            return self._json(
                404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            )
        repo_id, rest = match[1], match[2] or ""
        repo = st.repos[repo_id]
        if m == "GET" and rest == "refs":
            main = repo.commits[-1][0] if repo.commits else "0" * 40
            return self._json(
                200,
                {
                    "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": main}],
                    "converts": [],
                    "tags": [
                        {"name": t, "ref": f"refs/tags/{t}", "targetCommit": oid}
                        for t, oid in repo.tags.items()
                    ],
                },
            )
        if m == "GET" and (rest == "" or rest.startswith("revision/")):
            revision = rest.removeprefix("revision/") or None
            try:
                oid, files = repo.files_at(revision)
            except KeyError:
                return self._json(
                    404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
                )
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": oid,
                "private": repo.private,
                "siblings": [{"rfilename": n} for n in sorted(files)],
            }
            card = _card_data(files.get("README.md"))
            if card is not None:
                info["cardData"] = card
            return self._json(200, info)
        if m == "POST" and rest.startswith("preupload/"):
            data = json.loads(body)
            return self._json(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in data["files"]
                    ]
                },
            )
        if m == "POST" and rest.startswith("commit/"):
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            _, previous = repo.files_at(None)
            files = dict(previous)
            for line in lines:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            oid = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
            repo.commits.append((oid, files))
            return self._json(
                200, {"commitUrl": f"{self._base()}/{repo_id}/commit/{oid}", "commitOid": oid}
            )
        if m == "POST" and rest.startswith("tag/"):
            data = json.loads(body)
            revision = rest.removeprefix("tag/")
            if data["tag"] in repo.tags and repo.tags[data["tag"]]:
                return self._json(409, {"error": "Tag already exists"})
            repo.tags[data["tag"]] = repo.files_at(revision)[0]
            return self._json(200, {})
        return self._json(404, {"error": f"mock hub has no route {m} {path}"})

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle  # noqa: N815


class HubServer(LocalHTTPServer):
    """`with HubServer() as hub: push_to_hub(..., endpoint=hub.url)`."""

    state: HubState

    def __init__(self) -> None:
        super().__init__(_Handler, HubState())
