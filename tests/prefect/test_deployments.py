"""deployments/prefect.yaml on a real `prefect server` with a process worker: deploy every
deployment, trigger one through the API (as the UI does) and see it complete."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pipeline_helpers import pipeline_params
from prefect.settings import PREFECT_API_URL, temporary_settings

ROOT = Path(__file__).resolve().parents[2]
POOL = "tinker-process"
DEADLINE_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """Drains a process's output on a thread (so the pipe never fills) and lets a test wait,
    without sleeping, until a line containing some text has appeared."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._drain, args=(proc.stdout,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<exited>")
            self._changed.notify_all()

    def wait_for(self, needle: str, deadline_s: float) -> None:
        def seen() -> bool:
            return any(needle in line for line in self.lines) or "<exited>" in self.lines

        with self._changed:
            found = self._changed.wait_for(seen, timeout=deadline_s)
            if not found or not any(needle in line for line in self.lines):
                tail = "".join(self.lines[-30:])
                raise AssertionError(f"{needle!r} not seen within {deadline_s} s:\n{tail}")


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 with its own home and database."""
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-server-home")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        + ["--port", str(port), "--no-ui", "--analytics-off", "--log-level", "INFO"],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        Output(server).wait_for("Application startup complete", DEADLINE_S)
        yield (
            f"http://127.0.0.1:{port}/api",
            {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_final(flow_run_id):
    """Poll the API (as the UI does) until the run reaches a final state, within DEADLINE_S."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + DEADLINE_S
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"flow run {run.name} still {run.state}"
            threading.Event().wait(0.5)


def test_deploy_all_and_run_from_the_api(prefect_api, local_tinker, chat_jsonl, credentials):
    from prefect.deployments import run_deployment

    from prefect_tinker.checkpoints import find_resume_point

    api_url, env = prefect_api
    cli("work-pool", "create", POOL, "--type", "process", env=env)
    out = cli(
        "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", env=env
    )
    for name in ("tinker-sft-nightly", "tinker-export", "tinker-housekeeping"):
        assert name in out

    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
        cwd=ROOT,
        env={**env, "TINKER_API_KEY": local_tinker.api_key},  # the key never enters parameters
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = {"base_url": local_tinker.base_url}
    sft_params = {
        **pipeline_params(chat_jsonl, "deployed", max_steps=2),
        "credentials": service,
        "checkpoints": {"every": 2, "ttl_seconds": 3600},
        "evaluation": {"holdout_fraction": 0.25},
    }
    try:
        Output(worker).wait_for("started", DEADLINE_S)
        with temporary_settings({PREFECT_API_URL: api_url}):
            # As the UI's "Run" button does: create flow runs; the worker picks them up.
            runs = [
                run_deployment(
                    "tinker-sft-pipeline/tinker-sft-nightly", parameters=sft_params, timeout=0
                ),
                run_deployment(
                    "tinker-checkpoint-housekeeping/tinker-housekeeping",
                    parameters={"credentials": service, "run_keys": ["deployed"], "dry_run": True},
                    timeout=0,
                ),
            ]
            finished = [wait_until_final(r.id) for r in runs]
        for run in finished:
            assert run.state is not None and run.state.is_completed(), (run.name, run.state)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    final = find_resume_point(credentials.get_rest_client(), "deployed")
    assert final is not None and final.final and final.step == 2
