"""The downloader against a real HTTP server: resume, integrity, idempotency, safety."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from fileserver import FakeRest, FileServer

from prefect_tinker.errors import (
    CheckpointNotFound,
    ConfigurationError,
    IntegrityError,
    UnsafePathError,
    UnsupportedCheckpointError,
)
from prefect_tinker.export import MANIFEST_NAME, Manifest, download

PATH = "tinker://run-1:train:0/external_weights/final"


def _files() -> dict[str, bytes]:
    rnd = os.urandom
    return {
        "adapter_config.json": json.dumps({"r": 4}).encode(),
        "adapter_model.safetensors": rnd(3 * 1024 * 1024 + 17),
        "extra/tokenizer.json": rnd(700_000),
        "README.md": b"# card\n",
    }


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.state.files.update(_files())
        yield srv


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_download_writes_files_and_manifest(server, tmp_path):
    rest = FakeRest(server)
    dest = tmp_path / "out"
    manifest = download(rest, PATH, dest, concurrency=3)

    files = server.state.files
    assert _snapshot(dest) == {**files, MANIFEST_NAME: (dest / MANIFEST_NAME).read_bytes()}
    assert manifest.tinker_path == PATH
    assert manifest.bytes_transferred == sum(map(len, files.values()))
    assert {f.path: f.sha256 for f in manifest.files} == {
        n: hashlib.sha256(b).hexdigest() for n, b in files.items()
    }
    assert Manifest.read(dest) == manifest
    assert _leftovers(tmp_path) == []


def test_second_download_transfers_nothing(server, tmp_path):
    rest = FakeRest(server)
    download(rest, PATH, tmp_path / "out")
    served, signs = server.state.bytes_served, rest.sign_calls

    again = download(rest, PATH, tmp_path / "out")

    assert again.bytes_transferred == 0
    assert server.state.bytes_served == served
    assert rest.sign_calls == signs  # not even a signing round-trip


def test_cut_transfer_resumes_with_range(server, tmp_path):
    total = sum(map(len, server.state.files.values()))
    server.state.cut_once.update(server.state.files)

    manifest = download(FakeRest(server), PATH, tmp_path / "out")

    assert manifest.bytes_transferred == total
    assert server.state.bytes_served <= total * 1.05
    assert server.state.range_requests["adapter_model.safetensors"] == 1
    assert Manifest.read(tmp_path / "out").bad_files(tmp_path / "out") == []


def test_server_that_ignores_range_restarts_the_file(server, tmp_path):
    server.state.ignore_range = True
    server.state.cut_once.add("adapter_model.safetensors")

    download(FakeRest(server), PATH, tmp_path / "out")

    data = server.state.files["adapter_model.safetensors"]
    assert (tmp_path / "out" / "adapter_model.safetensors").read_bytes() == data


def test_corrupted_file_in_target_is_refetched_alone(server, tmp_path):
    rest = FakeRest(server)
    dest = tmp_path / "out"
    download(rest, PATH, dest)
    target = dest / "adapter_model.safetensors"
    raw = bytearray(target.read_bytes())
    raw[1000] ^= 0x01
    target.write_bytes(bytes(raw))

    manifest = download(rest, PATH, dest)

    assert manifest.bytes_transferred == len(server.state.files["adapter_model.safetensors"])
    assert target.read_bytes() == server.state.files["adapter_model.safetensors"]
    assert server.state.requests["adapter_config.json"] == 1


def test_corruption_in_transit_is_refetched_when_server_states_a_hash(server, tmp_path):
    server.state.send_sha256 = True
    server.state.corrupt_once.add("extra/tokenizer.json")

    download(FakeRest(server), PATH, tmp_path / "out")

    assert server.state.requests["extra/tokenizer.json"] == 2
    got = (tmp_path / "out" / "extra/tokenizer.json").read_bytes()
    assert got == server.state.files["extra/tokenizer.json"]


def test_persistent_hash_mismatch_is_an_integrity_error(server, tmp_path):
    server.state.send_sha256 = True
    server.state.corrupt_once = _Always({"README.md"})

    with pytest.raises(IntegrityError, match="README.md"):
        download(FakeRest(server), PATH, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == []


class _Always(set):
    """A set that never forgets: the server corrupts the file on every request."""

    def discard(self, _item) -> None:
        pass


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a\\..\\b", "x/../../y", "C:evil"])
def test_names_that_escape_the_target_are_refused(server, tmp_path, name):
    rest = FakeRest(server)
    rest.extra_names.append(name)
    with pytest.raises(UnsafePathError, match="refusing"):
        download(rest, PATH, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failed_download_leaves_the_target_as_it_was(server, tmp_path):
    rest = FakeRest(server)
    dest = tmp_path / "out"
    download(rest, PATH, dest)
    (dest / "README.md").write_bytes(b"changed locally\n")
    before = _snapshot(dest)
    server.state.gone.add("README.md")

    with pytest.raises(CheckpointNotFound, match="README.md"):
        download(rest, PATH, dest)

    assert _snapshot(dest) == before
    assert _leftovers(tmp_path) == []


def test_urls_are_signed_again_before_they_expire(server, tmp_path):
    rest = FakeRest(server, lifetimes_s=(-5.0, 3600.0))
    download(rest, PATH, tmp_path / "out")
    assert rest.sign_calls == 2


def test_sampler_checkpoints_are_refused_with_what_to_do(server, tmp_path):
    with pytest.raises(UnsupportedCheckpointError, match=r"weights/<name>.*external_weights"):
        download(FakeRest(server), "tinker://run-1:train:0/sampler_weights/s", tmp_path / "o")


def test_training_path_needs_a_service_client(server, tmp_path):
    with pytest.raises(ConfigurationError, match="service="):
        download(FakeRest(server), "tinker://run-1:train:0/weights/step-2", tmp_path / "o")


def test_target_with_other_content_is_not_overwritten(server, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="overwrite"):
        download(FakeRest(server), PATH, dest)
    assert _snapshot(dest) == {"mine.txt": b"keep me"}

    download(FakeRest(server), PATH, dest, overwrite=True)
    assert not (dest / "mine.txt").exists()


def test_progress_reports_every_byte(server, tmp_path):
    seen: dict[str, int] = {}

    def progress(update):
        seen[update.name] = seen.get(update.name, 0) + update.advance
        assert update.total is None or update.completed <= update.total

    download(FakeRest(server), PATH, tmp_path / "out", progress=progress)
    assert seen == {n: len(b) for n, b in server.state.files.items()}


class _ClockSkewRest(FakeRest):
    """Claims an hour of validity, but the first URLs it signs have already expired."""

    def get_external_weights_urls(self, tinker_path):
        response = super().get_external_weights_urls(tinker_path).result()
        if self.sign_calls == 1:
            response.urls = {n: u.split("?")[0] + "?exp=0" for n, u in response.urls.items()}
        return SimpleNamespace(result=lambda: response)


def test_refused_url_is_signed_again_once(server, tmp_path):
    rest = _ClockSkewRest(server)
    manifest = download(rest, PATH, tmp_path / "out", concurrency=2)
    assert rest.sign_calls == 2
    assert manifest.bytes_transferred == sum(map(len, server.state.files.values()))
