"""Malformed requests get a 4xx JSON answer naming what is wrong; never a 5xx or an empty 400."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import httpx
import pytest

from prefect_tinker.local import ensure_local_service
from prefect_tinker.local.app import _parse_range

ALICE = "tml-test-alice"


@pytest.fixture
def api(local_tinker):
    with httpx.Client(
        base_url=local_tinker.base_url + "/api/v1", headers={"X-API-Key": ALICE}, trust_env=False
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("POST", "/create_session", b"{not json", "not valid JSON"),
        ("POST", "/create_session", b"[1, 2]", "JSON object"),
        ("POST", "/create_model", b'{"session_id": "x", "model_seq_id": "a"}', "model_seq_id"),
        (
            "POST",
            "/create_model",
            b'{"session_id": "nope", "model_seq_id": 0, "base_model": "Qwen/Qwen3-0.6B",'
            b' "lora_config": {"rank": 4}}',
            "session 'nope'",
        ),
        ("POST", "/forward_backward", b"\xff\xff\xff", "ForwardBackwardRequest"),
        ("POST", "/optim_step", b'{"model_id": "ghost:train:0", "seq_id": 1}', "ghost:train:0"),
        (
            "POST",
            "/weights_info",
            b'{"tinker_path": "tinker://abc/weights"}',
            "tinker://abc/weights",
        ),
        ("POST", "/weights_info", b'{"tinker_path": "tinker://abc/bogus/x"}', "bogus"),
        ("POST", "/retrieve_future", b'{"request_id": "no-such-request"}', "no-such-request"),
        ("GET", "/training_runs?limit=0", None, "limit=0"),
        ("GET", "/training_runs?access_scope=everyone", None, "everyone"),
        ("GET", "/training_runs/ghost:train:0", None, "ghost:train:0"),
        (
            "PUT",
            "/training_runs/r/checkpoints/weights/x/ttl",
            b'{"ttl_seconds": 5}',
            "ttl_seconds=5",
        ),
        ("POST", "/training_runs/r/checkpoints/bad/x/publish", b"", "bad"),
        ("GET", "/samplers/ghost:sample:0", None, "ghost:sample:0"),
        ("POST", "/no_such_endpoint", b"{}", "no such route"),
    ],
)
def test_malformed_requests_get_a_4xx_naming_the_problem(api, method, path, body, needle) -> None:
    r = api.request(method, path, content=body)
    assert 400 <= r.status_code < 500 and r.status_code not in (408, 409, 429), r.text
    assert r.headers["content-type"].startswith("application/json")
    assert needle in r.json()["detail"], r.json()


def test_unknown_future_is_410_and_create_model_with_unknown_base_is_400(api) -> None:
    assert api.post("/retrieve_future", json={"request_id": "x"}).status_code == 410
    sid = api.post("/create_session", json={"tags": []}).json()["session_id"]
    r = api.post(
        "/create_model",
        json={
            "session_id": sid,
            "model_seq_id": 0,
            "base_model": "Nope/Model",
            "lora_config": {"rank": 4},
        },
    )
    assert r.status_code == 400 and "Nope/Model" in r.json()["detail"]
    assert api.post(f"/sessions/{sid}/finish", json={}).status_code == 204
    assert api.post("/session_heartbeat", json={"session_id": sid}).status_code == 410


def test_signed_urls_need_a_valid_signature(local_tinker) -> None:
    base = local_tinker.base_url
    r = httpx.get(
        f"{base}/signed/a:train:0/external_weights/x/f.json?exp=9999999999&sig=00", trust_env=False
    )
    assert r.status_code == 403 and "signed URL" in r.json()["detail"]
    r = httpx.get(f"{base}/signed/a/external_weights/x/f.json?exp=soon&sig=00", trust_env=False)
    assert r.status_code == 400


def test_range_header_parsing() -> None:
    assert _parse_range("bytes=0-9", 100) == (0, 9)
    assert _parse_range("bytes=90-", 100) == (90, 99)
    assert _parse_range("bytes=-10", 100) == (90, 99)
    assert _parse_range("bytes=100-", 100) is None
    assert _parse_range("bytes=5-2", 100) is None
    assert _parse_range("items=0-1", 100) is None


def test_ranged_download_answers_206_and_416(local_tinker) -> None:
    import tinker
    from service_helpers import BASE

    service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=ALICE)
    tc = service.create_lora_training_client(BASE, rank=4, seed=4).result()
    path = tc.save_weights_external("range-check").result().path
    rest = tinker.RestClient(base_url=local_tinker.base_url, api_key=ALICE)
    url = rest.get_external_weights_urls(path).result().urls["adapter_config.json"]
    full = httpx.get(url, trust_env=False)
    assert full.status_code == 200 and int(full.headers["content-length"]) == len(full.content)
    part = httpx.get(url, headers={"Range": "bytes=10-19"}, trust_env=False)
    assert part.status_code == 206 and part.content == full.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(full.content)}"
    bad = httpx.get(url, headers={"Range": f"bytes={len(full.content)}-"}, trust_env=False)
    assert bad.status_code == 416
    json.loads(full.content)
    service.close("success").result()


def test_encrypted_external_weights_decrypt_with_the_identity(local_tinker) -> None:
    import pyrage
    import tinker
    from service_helpers import BASE

    identity = pyrage.x25519.Identity.generate()
    service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=ALICE)
    tc = service.create_lora_training_client(BASE, rank=4, seed=4).result()
    path = (
        tc.save_weights_external("sealed", age_encryption_recipients=[str(identity.to_public())])
        .result()
        .path
    )
    rest = tinker.RestClient(base_url=local_tinker.base_url, api_key=ALICE)
    urls = rest.get_external_weights_urls(path).result().urls
    assert set(urls) == {"adapter_config.json.age", "adapter_model.safetensors.age"}
    sealed = httpx.get(urls["adapter_config.json.age"], trust_env=False).content
    assert json.loads(pyrage.decrypt(sealed, [identity]))["r"] == 4
    service.close("success").result()


def test_ensure_local_service_starts_once_and_keeps_its_key_private(tmp_path) -> None:
    url, key = ensure_local_service(tmp_path)
    assert ensure_local_service(tmp_path) == (url, key)
    assert key.startswith("tml-local-")
    assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o600
    recorded = json.loads((tmp_path / "server.json").read_text())
    assert recorded["base_url"] == url and key not in (tmp_path / "server.json").read_text()
    r = httpx.post(
        f"{url}/api/v1/client/config", headers={"X-API-Key": key}, json={}, trust_env=False
    )
    assert r.json()["pjwt_auth_enabled"] is False and r.json()["use_pyqwest_transport"] is False


def test_importing_the_local_package_does_not_import_torch() -> None:
    code = (
        "import sys, prefect_tinker.local as l; l.LocalTinker; l.FaultConfig; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
