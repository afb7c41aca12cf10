"""Crash drills: the training + export pipeline SIGKILLed at seeded random points (mid-step,
between a step and its checkpoint, during a save, during the export), then run again; and the
local service itself killed and restarted mid-run. Every run completes, the final adapter is
bit-identical to an uninterrupted run, and no checkpoint listed before a kill is lost.

The same drills also run on the Prefect pipeline (`sft_pipeline` in the Prefect owner's crash
child, killed at a seeded request, including inside its export subflow).

CI runs one library drill per kill kind (4) and one pipeline drill; the full counts:
`PREFECT_TINKER_DRILLS=20 PREFECT_TINKER_PIPELINE_DRILLS=20 python -m pytest
tests/hardening/test_crash_drills.py` (seed: `PREFECT_TINKER_DRILL_SEED`, default 0).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hardening_helpers import (
    ALICE,
    DRILL_STEPS,
    drill_pipeline,
    run_key_checkpoints,
    wait_until,
)

CHILD = Path(__file__).with_name("drill_child.py")
DRILLS = int(os.environ.get("PREFECT_TINKER_DRILLS", "4"))
SEED = int(os.environ.get("PREFECT_TINKER_DRILL_SEED", "0"))
KINDS = ("mid-step", "before-checkpoint", "during-save", "during-export")
DEADLINE_S = 120


def sigkill_at_request(
    proc: subprocess.Popen, stats, route: str, count: int, child_log: Path
) -> None:
    """SIGKILL `proc` once the service has seen `count` requests of `route` (or it ended)."""
    try:
        wait_until(
            lambda: stats[route] >= count or proc.poll() is not None,
            DEADLINE_S,
            f"request #{count} of {route}",
        )
    finally:
        proc.kill()
        proc.wait(30)
    assert stats[route] >= count, (
        f"child ended before the kill point ({proc.returncode}): " + child_log.read_text()[-2000:]
    )


def kill_point(index: int) -> tuple[str, str, int]:
    """(kind, route, k) of drill `index`: kill when the service sees the k-th `route` request."""
    rng = random.Random(f"{SEED}:{index}")
    kind = KINDS[index % len(KINDS)]
    if kind == "mid-step":
        return kind, "forward_backward", rng.randint(1, DRILL_STEPS)
    if kind == "before-checkpoint":
        return kind, "optim_step", rng.choice(range(2, DRILL_STEPS + 1, 2))
    if kind == "during-save":
        return kind, "save_weights", rng.randint(1, DRILL_STEPS // 2)
    return kind, rng.choice(["save_weights_external", "download"]), 1


POINTS = [kill_point(i) for i in range(DRILLS)]
RESULTS: list[str] = []


@pytest.fixture(scope="module")
def drill_service(tmp_path_factory):
    """A dedicated service, so request counts belong to the drills alone."""
    from prefect_tinker.local import LocalTinker

    with LocalTinker(tmp_path_factory.mktemp("drill-tinker"), api_keys=(ALICE,)) as svc:
        yield svc
    if RESULTS:
        print("\ncrash drills:\n  " + "\n  ".join(RESULTS))


@pytest.fixture(scope="module")
def reference(drill_service, tmp_path_factory) -> str:
    """sha256 of the adapter of one uninterrupted run."""
    result, digest = drill_pipeline(
        drill_service.base_url, ALICE, "drill-reference", tmp_path_factory.mktemp("ref")
    )
    assert result.final_step == DRILL_STEPS and result.resumed_from is None
    return digest


@pytest.mark.parametrize(
    ("index", "point"),
    list(enumerate(POINTS)),
    ids=[f"{i}-{kind}-{route}#{k}" for i, (kind, route, k) in enumerate(POINTS)],
)
def test_sigkill_drill_resumes_bit_identical_and_loses_no_checkpoint(
    drill_service, reference, tmp_path, index, point
) -> None:
    kind, route, k = point
    url, run_key = drill_service.base_url, f"drill-{SEED}-{index}"
    stats = drill_service.stats.requests
    start = stats[route]
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), url, ALICE, run_key, str(tmp_path / "killed")],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "child.log").open("w"),
        text=True,
    )
    sigkill_at_request(proc, stats, route, start + k, tmp_path / "child.log")
    before = run_key_checkpoints(url, ALICE, run_key)

    result, digest = drill_pipeline(url, ALICE, run_key, tmp_path / "resumed")

    after = run_key_checkpoints(url, ALICE, run_key)
    assert result.final_step == DRILL_STEPS
    assert digest == reference, f"drill {index} ({kind} at {route}#{k}): adapter differs"
    assert before <= after, f"checkpoints lost: {sorted(before - after)}"
    RESULTS.append(
        f"drill {index}: kill at {route}#{k} ({kind}); {len(before)} checkpoint(s) before, "
        f"resumed from {result.resumed_from or 'scratch'}, {result.steps_run} step(s) re-run: "
        "bit-identical"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int, key: str) -> subprocess.Popen[str]:
    cli = Path(sys.executable).parent / "prefect-tinker"
    proc = subprocess.Popen(
        [str(cli), "local", "serve", "--port", str(port), "--data-dir", str(data_dir)]
        + ["--api-key", key],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"http://127.0.0.1:{port}"
    return proc


def test_local_service_killed_and_restarted_mid_run(reference, tmp_path) -> None:
    """`prefect-tinker local serve` is SIGKILLed after the first checkpoint of a running
    pipeline and restarted on the same data dir and port; the pipeline, run again, resumes
    from the service's checkpoint and ends with the uninterrupted run's adapter."""
    key, run_key, port = "tml-drill-restart", "drill-service-restart", _free_port()
    data_dir, url = tmp_path / "service", f"http://127.0.0.1:{port}"
    server = _serve(data_dir, port, key)
    outcome: dict[str, object] = {}

    def first_attempt() -> None:
        try:
            outcome["result"] = drill_pipeline(url, key, run_key, tmp_path / "first")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=first_attempt, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: bool(run_key_checkpoints(url, key, run_key)) or not thread.is_alive(),
            DEADLINE_S,
            "the first checkpoint",
        )
        before = run_key_checkpoints(url, key, run_key)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    assert before, f"the run ended before the first checkpoint: {outcome}"
    t0 = time.monotonic()
    server = _serve(data_dir, port, key)
    try:
        # The run kept training between the snapshot and the kill, so what survived the kill
        # is what the restarted service lists (the first attempt's model died with the old
        # process: it cannot add checkpoints now).
        survivors = run_key_checkpoints(url, key, run_key)
        # Run again at once; the interrupted attempt finds out on its own (SDK retries).
        result, digest = drill_pipeline(url, key, run_key, tmp_path / "second")
        after = run_key_checkpoints(url, key, run_key)
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), "the interrupted pipeline never returned after the restart"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    print(
        f"\nservice restart drill: killed with {len(before)} checkpoint(s); first attempt "
        f"{'failed: ' + type(outcome['error']).__name__ if 'error' in outcome else 'completed'}; "
        f"second attempt resumed from {result.resumed_from} and finished "
        f"{time.monotonic() - t0:.1f}s after the restart"
    )
    assert result.final_step == DRILL_STEPS
    assert before <= survivors
    newest = max(p for p in survivors if "/weights/step-" in p)  # one run; step-NNNNNN sorts
    assert result.resumed_from == newest
    if "result" in outcome:  # the first attempt finished after the restart: same bytes
        assert outcome["result"][1] == reference
    assert digest == reference
    assert before <= after


# ---- the same drills on the Prefect pipeline (sft_pipeline + its export_checkpoint subflow) ----

PIPELINE_CHILD = Path(__file__).parents[1] / "prefect" / "crash_child.py"  # the Prefect owner's
PIPELINE_DRILLS = int(os.environ.get("PREFECT_TINKER_PIPELINE_DRILLS", "1"))
PIPELINE_ROUTES = (
    ("mid-step", "forward_backward", (1, 4)),
    ("during-save", "save_weights", (1, 2)),
    ("during-export", "save_weights_for_sampler", (1, 1)),
    ("during-export", "save_weights_external", (1, 1)),
    ("during-export", "download", (1, 2)),
)


def pipeline_kill_point(index: int) -> tuple[str, str, int]:
    rng = random.Random(f"pipeline:{SEED}:{index}")
    kind, route, (lo, hi) = rng.choice(PIPELINE_ROUTES)
    return kind, route, rng.randint(lo, hi)


PIPELINE_POINTS = [pipeline_kill_point(i) for i in range(PIPELINE_DRILLS)]


@pytest.fixture(scope="module")
def prefect_api():
    """A temporary Prefect server, only for the pipeline drills."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield PREFECT_API_URL.value()


def pipeline_params(dataset: Path, run_key: str, adapter_dir: Path) -> dict:
    """4 steps of batch 2, a checkpoint every 2 steps, evaluation and a downloaded adapter."""
    words = ["tinker", "prefect", "adapter", "lora", "flow", "task", "block", "model"]
    if not dataset.exists():
        dataset.write_text(
            "".join(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"Reverse: {w}"},
                            {"role": "assistant", "content": w[::-1]},
                        ]
                    }
                )
                + "\n"
                for w in words * 2
            )
        )
    return {
        "base_model": "Qwen/Qwen3-0.6B",
        "dataset": str(dataset),
        "lora": {"rank": 4, "seed": 0},
        "learning_rate": 2e-2,
        "batch_size": 2,
        "num_epochs": 2,
        "max_steps": 4,
        "max_length": 48,
        "checkpoints": {"every": 2, "ttl_seconds": 3600},
        "evaluation": {"holdout_fraction": 0.25},
        "export": {"download_dir": str(adapter_dir)},
        "run_key": run_key,
        "seed": 0,
    }


@pytest.fixture(scope="module")
def pipeline_reference(prefect_api, drill_service, tmp_path_factory) -> tuple[str, Path]:
    from prefect_tinker import TinkerCredentials, sft_pipeline

    work = tmp_path_factory.mktemp("pipeline-drills")
    creds = TinkerCredentials(base_url=drill_service.base_url, api_key=ALICE)
    params = pipeline_params(work / "reverse.jsonl", "pdrill-reference", work / "ref-adapter")
    result = sft_pipeline(credentials=creds, **params)
    return _sha256(Path(result.adapter_dir) / "adapter_model.safetensors"), work


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("index", "point"),
    list(enumerate(PIPELINE_POINTS)),
    ids=[f"{i}-{kind}-{route}#{k}" for i, (kind, route, k) in enumerate(PIPELINE_POINTS)],
)
def test_pipeline_sigkill_drill_resumes_bit_identical(
    prefect_api, drill_service, pipeline_reference, tmp_path, index, point
) -> None:
    """`sft_pipeline` in a child process (the Prefect owner's crash child, never pausing)
    SIGKILLed at a seeded request, then run again in this process: same adapter bytes."""
    from prefect_tinker import TinkerCredentials, sft_pipeline

    kind, route, k = point
    reference, work = pipeline_reference
    url, run_key = drill_service.base_url, f"pdrill-{SEED}-{index}"
    params = pipeline_params(work / "reverse.jsonl", run_key, tmp_path / "adapter")
    child_params = params | {"credentials": {"base_url": url, "api_key": ALICE}}
    stats = drill_service.stats.requests
    start = stats[route]
    proc = subprocess.Popen(
        [sys.executable, str(PIPELINE_CHILD), "0", json.dumps(child_params)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "child.log").open("w"),
        env={**os.environ, "PREFECT_API_URL": prefect_api},
    )
    sigkill_at_request(proc, stats, route, start + k, tmp_path / "child.log")
    before = run_key_checkpoints(url, ALICE, run_key)

    creds = TinkerCredentials(base_url=url, api_key=ALICE)
    result = sft_pipeline(credentials=creds, **params)

    assert result.final_step == 4
    assert _sha256(Path(result.adapter_dir) / "adapter_model.safetensors") == reference
    assert before <= run_key_checkpoints(url, ALICE, run_key)
    RESULTS.append(
        f"pipeline drill {index}: kill at {route}#{k} ({kind}); {len(before)} checkpoint(s) "
        f"before, resumed from {result.resumed_from or 'scratch'}: bit-identical"
    )
