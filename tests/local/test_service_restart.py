"""`prefect-tinker local serve`: killed with -9 mid-run, restarted on the same data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import tinker
from service_helpers import BASE, chat_datums, train_steps

KEY = "tml-test-restart"


def _serve(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    cli = Path(sys.executable).parent / "prefect-tinker"
    proc = subprocess.Popen(
        [str(cli), "local", "serve", "--port", "0", "--data-dir", str(data_dir), "--api-key", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()  # printed once the service answers
    assert base_url.startswith("http://127.0.0.1:"), base_url
    return proc, base_url


def test_runs_and_checkpoints_survive_kill_9_and_training_resumes(tmp_path: Path) -> None:
    proc, url = _serve(tmp_path)
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    try:
        tc = service.create_lora_training_client(BASE, rank=4, seed=2).result()
        datums = chat_datums(tc.get_tokenizer())
        train_steps(tc, datums, 0, 2)
        state = tc.save_state("step-2").result().path
        run_id = tc.model_id
        # Queue more work and kill the process while it is in flight.
        tc.forward_backward(datums[:4], "cross_entropy")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # close() would retry /finish against the dead service for minutes while the session
        # keeps heartbeating; drop the client's background tasks directly instead.
        if service._session_holder is not None:
            service._session_holder.close()
    assert (tmp_path / "tinker.db").exists()

    proc, url = _serve(tmp_path)
    try:
        rest = tinker.RestClient(base_url=url, api_key=KEY)
        assert run_id in {
            r.training_run_id for r in rest.list_training_runs().result().training_runs
        }
        ids = [c.checkpoint_id for c in rest.list_checkpoints(run_id).result().checkpoints]
        assert ids == ["weights/step-2"]
        service = tinker.ServiceClient(base_url=url, api_key=KEY)
        resumed = service.create_training_client_from_state_with_optimizer(state).result()
        losses = train_steps(resumed, datums, 2, 4)
        assert len(losses) == 2 and all(loss > 0 for loss in losses)
        assert resumed.save_state("step-4").result().path.endswith("/weights/step-4")
        service.close("success").result()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not (tmp_path / "server.json").exists()  # a clean stop removes its record
    assert os.stat(tmp_path / "signing.key").st_mode & 0o077 == 0
