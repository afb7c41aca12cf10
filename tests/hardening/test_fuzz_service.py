"""Fuzz the local service over real HTTP: every endpoint of the wire-protocol table, with
malformed JSON, wrong types, random protobuf bytes, random path segments and bad Range
headers. The answer is always < 500, never 408/409/429, and every error is a JSON body with
a `detail`; nothing hangs (httpx timeouts)."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import tinker
from fuzz_support import FUZZ, tried
from hardening_helpers import ALICE, BASE_MODEL, BOB
from hypothesis import given
from hypothesis import strategies as st
from tinker.proto import tinker_public_pb2 as pb

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
RETRYABLE = (408, 409, 429)

# JSON POST endpoints of the spec table (§6, rows 1-33), with the fields each body has.
JSON_POSTS: dict[str, tuple[str, ...]] = {
    "client/config": ("sdk_version",),
    "client/dynamic_config": ("sdk_version",),
    "create_session": ("tags", "user_metadata", "project_id", "sdk_version", "type"),
    "session_heartbeat": ("session_id", "type"),
    "create_model": ("session_id", "model_seq_id", "base_model", "lora_config", "user_metadata"),
    "get_info": ("model_id", "type"),
    "optim_step": ("model_id", "seq_id", "adam_params"),
    "save_weights": ("model_id", "path", "seq_id", "overwrite", "ttl_seconds", "user_metadata"),
    "save_weights_for_sampler": (
        "model_id",
        "path",
        "sampling_session_seq_id",
        "seq_id",
        "ttl_seconds",
    ),
    "save_weights_external": (
        "model_id",
        "path",
        "seq_id",
        "ttl_seconds",
        "age_encryption_recipients",
    ),
    "load_weights": ("model_id", "seq_id", "session_id", "model_seq_id", "path", "optimizer"),
    "retrieve_future": ("request_id", "allow_metadata_only"),
    "create_sampling_session": (
        "session_id",
        "sampling_session_seq_id",
        "base_model",
        "model_path",
    ),
    "asample": (
        "sampling_session_id",
        "base_model",
        "model_path",
        "prompt",
        "num_samples",
        "sampling_params",
        "prompt_logprobs",
        "prompt_logprobs_last_n",
    ),
    "telemetry": ("events", "platform", "sdk_version", "session_id"),
    "weights_info": ("tinker_path",),
    "cancel_future": ("request_id",),
}
# Path-parameter routes: (method, template); {r} run id, {s} segment, {n} name, {x} any id.
PATH_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "get_server_capabilities"),
    ("GET", "healthz"),
    ("GET", "samplers/{x}"),
    ("GET", "sessions/{x}"),
    ("POST", "sessions/{x}/finish"),
    ("GET", "training_runs/{r}"),
    ("GET", "training_runs/{r}/checkpoints"),
    ("DELETE", "training_runs/{r}/checkpoints/{s}/{n}"),
    ("POST", "training_runs/{r}/checkpoints/{s}/{n}/publish"),
    ("DELETE", "training_runs/{r}/checkpoints/{s}/{n}/publish"),
    ("PUT", "training_runs/{r}/checkpoints/{s}/{n}/ttl"),
    ("GET", "training_runs/{r}/checkpoints/external_weights/{n}/external_weights_urls"),
)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A dedicated service (short long-poll) with one live session, model and checkpoints."""
    from prefect_tinker.local import LocalTinker

    svc = LocalTinker(tmp_path_factory.mktemp("fuzz-tinker"), api_keys=(ALICE, BOB), long_poll_s=1)
    with svc:
        service = tinker.ServiceClient(base_url=svc.base_url, api_key=ALICE)
        tc = service.create_lora_training_client(BASE_MODEL, rank=2, seed=0).result()
        state = tc.save_state("fuzz-state").result().path
        external = tc.save_weights_external("fuzz-external").result().path
        rest = tinker.RestClient(base_url=svc.base_url, api_key=ALICE)
        urls = rest.get_external_weights_urls(external).result().urls
        with httpx.Client(base_url=svc.base_url, timeout=TIMEOUT, trust_env=False) as http:
            yield {
                "svc": svc,
                "http": http,
                "model_id": tc.model_id,
                "session_id": tc.model_id.split(":train:")[0],
                "run_id": tc.model_id,
                "state": state,
                "external": external,
                "signed": urls["adapter_config.json"],
            }
        service.close("success").result(timeout=60)


def check_answer(r: httpx.Response, what: str) -> None:
    """< 500, not a retryable 4xx, and an error always carries a JSON `detail`."""
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    assert r.status_code not in RETRYABLE, f"{what}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        assert r.headers.get("content-type", "").startswith("application/json"), (what, r.text)
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("detail"), str), (what, body)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def field_values(ctx: dict) -> st.SearchStrategy:
    """Values for a known field: random JSON, or a real id of the fixture (to get deeper)."""
    real = st.sampled_from(
        [ctx["model_id"], ctx["session_id"], ctx["state"], ctx["external"], "tinker://x/y/z"]
    )
    return json_values | real


@st.composite
def json_body(draw, ctx: dict) -> tuple[str, bytes]:
    endpoint = draw(st.sampled_from(sorted(JSON_POSTS)))
    kind = draw(st.sampled_from(["bytes", "json", "fields"]))
    if kind == "bytes":
        return endpoint, draw(st.binary(max_size=200))
    if kind == "json":
        return endpoint, json.dumps(draw(json_values)).encode()
    names = JSON_POSTS[endpoint]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    body = {name: draw(field_values(ctx)) for name in chosen}
    return endpoint, json.dumps(body).encode()


def test_fuzz_json_bodies_get_4xx_json_never_5xx(target) -> None:
    http = target["http"]

    @FUZZ
    @given(case=json_body(target), key=st.sampled_from([ALICE, BOB]))
    def run(case: tuple[str, bytes], key: str) -> None:
        endpoint, body = case
        tried(f"service: JSON bodies ({len(JSON_POSTS)} endpoints)")
        r = http.post(
            f"/api/v1/{endpoint}",
            content=body,
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        check_answer(r, f"POST {endpoint} {body[:120]!r}")

    run()


segment = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1, max_size=24
)


def test_fuzz_path_segments_and_queries(target) -> None:
    http = target["http"]
    real_runs = st.sampled_from([target["run_id"], "ghost:train:0"])

    @FUZZ
    @given(
        route=st.sampled_from(PATH_ROUTES),
        r=real_runs | segment,
        s=st.sampled_from(["weights", "sampler_weights", "external_weights"]) | segment,
        n=st.sampled_from(["fuzz-state", "fuzz-external"]) | segment,
        x=segment,
        body=st.none() | st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()),
        key=st.sampled_from([ALICE, BOB, "tml-nobody", ""]),
    )
    def run(route, r, s, n, x, body, key) -> None:
        method, template = route
        if template == "sessions/{x}/finish" and x == target["session_id"]:
            return  # finishing the fixture's own session would end the other properties' model
        if method == "DELETE" and r == target["run_id"]:
            return  # keep the fixture's checkpoints for the signed-URL property
        tried("service: path segments x 12 routes")
        path = template.format(
            r=quote(r, safe=":"), s=quote(s, safe=""), n=quote(n, safe=""), x=quote(x, safe=":")
        )
        headers = {"X-API-Key": key} if key else {}
        resp = http.request(method, f"/api/v1/{path}", content=body, headers=headers)
        check_answer(resp, f"{method} {path}")

    run()


def test_fuzz_list_queries(target) -> None:
    http = target["http"]
    query_value = st.integers(-(2**40), 2**40).map(str) | segment

    @FUZZ
    @given(
        route=st.sampled_from(["training_runs", "checkpoints"]),
        params=st.dictionaries(
            st.sampled_from(["limit", "offset", "access_scope", "project_id"]),
            query_value,
            max_size=4,
        ),
    )
    def run(route, params) -> None:
        tried("service: list queries")
        resp = http.get(f"/api/v1/{route}", params=params, headers={"X-API-Key": ALICE})
        check_answer(resp, f"GET {route} {params}")

    run()


def test_fuzz_random_bytes_as_forward_backward_protobuf(target) -> None:
    http = target["http"]

    @FUZZ
    @given(body=st.binary(max_size=512), zstd=st.booleans())
    def run(body: bytes, zstd: bool) -> None:
        tried("service: forward_backward random bytes")
        headers = {"X-API-Key": ALICE, "Content-Type": "application/x-protobuf"}
        if zstd:
            headers["Content-Encoding"] = "zstd"
        r = http.post("/api/v1/forward_backward", content=body, headers=headers)
        check_answer(r, f"forward_backward {body[:60]!r}")

    run()


@st.composite
def tensors(draw) -> pb.Tensor:
    dtype = draw(st.sampled_from([0, 1, 2, 3, 4, 99]))
    shape = draw(st.lists(st.integers(-3, 2**33), max_size=3))
    t = pb.Tensor(dtype=dtype, shape=shape)
    if draw(st.booleans()):
        t.dense = draw(st.binary(max_size=64))
    else:
        t.sparse_csr.values = draw(st.binary(max_size=32))
        t.sparse_csr.crow_indices = draw(st.binary(max_size=32))
        t.sparse_csr.col_indices = draw(st.binary(max_size=32))
    return t


@st.composite
def fwd_requests(draw, model_id: str) -> bytes:
    """Well-formed protobuf with hostile contents: odd dtypes, shapes, ids and loss configs."""
    req = pb.ForwardBackwardRequest(
        model_id=draw(st.sampled_from([model_id, "ghost:train:0"]) | st.text(max_size=10)),
        loss_fn=draw(
            st.sampled_from(["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"])
            | st.text(max_size=10)
        ),
        forward_only=draw(st.booleans()),
    )
    for key, value in draw(st.dictionaries(st.text(max_size=8), st.floats(), max_size=2)).items():
        req.loss_fn_config[key] = value
    for _ in range(draw(st.integers(0, 3))):
        datum = req.data.add()
        for _ in range(draw(st.integers(0, 2))):
            ids = draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=12))
            datum.model_input.add().encoded_text.tokens = np.array(ids, "<i4").tobytes()
        names = st.sampled_from(["target_tokens", "weights", "advantages", "logprobs"])
        for name in draw(st.lists(names | st.text(max_size=6), unique=True, max_size=4)):
            datum.loss_fn_inputs[name].CopyFrom(draw(tensors()))
    return req.SerializeToString()


def test_fuzz_structured_forward_backward_completes_with_a_typed_answer(target) -> None:
    """Hostile but decodable requests on a live model: the submit is < 500 and its future ends
    (no hang) in a protobuf result or a `{error, category}` answer."""
    http = target["http"]
    headers = {"X-API-Key": ALICE, "Content-Type": "application/x-protobuf"}

    @FUZZ
    @given(body=fwd_requests(target["model_id"]))
    def run(body: bytes) -> None:
        tried("service: forward_backward hostile protobuf")
        r = http.post("/api/v1/forward_backward", content=body, headers=headers)
        check_answer(r, "forward_backward (structured)")
        if r.status_code != 200:
            return
        request_id = r.json()["request_id"]
        for _ in range(30):  # each poll long-polls up to 1 s
            answer = http.post(
                "/api/v1/retrieve_future",
                json={"request_id": request_id},
                headers={"X-API-Key": ALICE},
            )
            check_answer(answer, "retrieve_future")
            if answer.headers["content-type"].startswith("application/x-protobuf"):
                return
            result = answer.json()
            if result.get("type") != "try_again":
                assert set(result) >= {"error", "category"}, result
                assert result["category"] in ("user", "server", "unknown"), result
                return
        raise AssertionError(f"future {request_id} of a fuzzed request never completed")

    run()


def test_fuzz_signed_route_paths_and_range_headers(target) -> None:
    http = target["http"]
    good = httpx.URL(target["signed"])
    prefix = good.path.rsplit("/", 1)[0]
    range_header = (
        st.from_regex(r"bytes=[0-9]{0,12}-[0-9]{0,12}", fullmatch=True)
        | st.from_regex(r"bytes=[0-9]{0,3}-[0-9]{0,3}(,[0-9]{0,3}-[0-9]{0,3})+", fullmatch=True)
        | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
    )  # header values h11 can send: visible ASCII, no surrounding blanks

    @FUZZ
    @given(
        kind=st.sampled_from(["range", "path", "query"]),
        header=range_header,
        tail=segment,
        exp=st.text(max_size=14) | st.integers(-(2**63), 2**64).map(str),
        sig=st.text(max_size=70),
    )
    def run(kind, header, tail, exp, sig) -> None:
        tried("service: signed route (paths, exp/sig, Range)")
        if kind == "range":
            r = http.get(str(good), headers={"Range": header})
            assert r.status_code in (200, 206, 416), (header, r.status_code)
            if r.status_code == 416:
                check_answer(r, f"Range {header!r}")
            return
        if kind == "path":
            url = good.copy_with(path=f"{prefix}/{quote(tail, safe='')}")
        else:
            url = good.copy_with(params={"exp": exp, "sig": sig})
        r = http.get(str(url))
        check_answer(r, f"signed {url}")
        assert r.status_code >= 400 or url == good

    run()


# Found by this fuzzing (a TypeError in hmac.compare_digest -> 500), fixed in dd5cf33.
def test_signed_route_with_a_non_ascii_signature_is_a_4xx(target) -> None:
    good = httpx.URL(target["signed"])
    r = target["http"].get(str(good.copy_with(params={"exp": "9999999999", "sig": "\u0080"})))
    check_answer(r, "signed URL with sig='\\x80'")
