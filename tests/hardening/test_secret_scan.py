"""Secret scan: after a full `sft_pipeline` (+ its `export_checkpoint` subflow, pushing to a
local Hub) run with a Tinker key and an HF token held in saved blocks, three runs that fail on
purpose, and the CLI with the key in its environment, neither secret (nor its base64 form)
appears anywhere Prefect or prefect-tinker keeps or prints things: the Prefect database files,
every flow/task log, artifacts, flow- and task-run parameters and states, events, the failed
runs' exception texts, every file under PREFECT_HOME / PREFECT_TINKER_HOME and the local
service's data dir, and CLI output (including the failed runs' results that Prefect persists
into PREFECT_HOME/storage: this scan found the key there, inside a pickled SDK exception, until
the tasks raised typed errors instead).

Block documents are safe by design: the Prefect server stores their data Fernet-encrypted
(`prefect/server/models/block_documents.py`), so the database needs no exclusion and is read
whole.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from prefect import flow
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))  # the export owner's Hub mock

from hubserver import HubServer  # noqa: E402

TINKER_KEY = f"tml-SECRET{secrets.token_hex(12)}"
WRONG_KEY = f"tml-SECRETWRONG{secrets.token_hex(12)}"
HF_TOKEN = f"hf_SECRET{secrets.token_hex(12)}"
SECRETS = {"tinker key": TINKER_KEY, "wrong tinker key": WRONG_KEY, "hf token": HF_TOKEN}
WORDS = ["tinker", "prefect", "adapter", "lora", "flow", "task", "block", "model"]


def needles() -> dict[str, bytes]:
    """Each secret raw, URL-quoted, and base64-encoded at all three byte alignments."""
    out: dict[str, bytes] = {}
    for name, value in SECRETS.items():
        raw = value.encode()
        out[name] = raw
        out[f"{name} (url-quoted)"] = quote(value).encode()
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + raw)
            # drop the chars that depend on neighbouring bytes: the prefix and the padding tail
            core = encoded[(shift * 4 + 2) // 3 + 1 : -4]
            out[f"{name} (base64+{shift})"] = core
            out[f"{name} (urlsafe base64+{shift})"] = core.replace(b"+", b"-").replace(b"/", b"_")
    return out


NEEDLES = needles()


def leaks(where: str, data: bytes | str) -> list[str]:
    blob = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [f"{name} in {where}" for name, needle in NEEDLES.items() if needle in blob]


def scan_tree(root: Path) -> tuple[list[str], int]:
    found, files = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        files += 1
        found += leaks(str(path), path.read_bytes())
    return found, files


@pytest.fixture(scope="module")
def prefect_db() -> Path:
    """A fresh temporary Prefect server for this module; yields its database directory."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
        yield Path(url.split("///", 1)[1]).parent


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from prefect_tinker.local import LocalTinker

    with LocalTinker(tmp_path_factory.mktemp("secret-tinker"), api_keys=(TINKER_KEY,)) as svc:
        yield svc


@pytest.fixture(scope="module")
def runs(prefect_db, service, tmp_path_factory):
    """The successful pipeline, two failing runs and the CLI; every text they produced."""
    import huggingface_hub.constants

    from prefect_tinker import (
        CheckpointPolicy,
        EvalOptions,
        ExportOptions,
        HuggingFaceCredentials,
        TinkerCredentials,
        TinkerLoraConfig,
        sft_pipeline,
    )

    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = False  # the Hub is the local mock below
    work = tmp_path_factory.mktemp("secret-scan")
    dataset = work / "reverse.jsonl"
    dataset.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Reverse: {w}"},
                        {"role": "assistant", "content": w[::-1]},
                    ]
                }
            )
            for w in WORDS * 2
        )
        + "\n"
    )
    texts: dict[str, str] = {}
    t0 = time.monotonic()
    try:
        with HubServer() as hub:
            TinkerCredentials(api_key=TINKER_KEY, base_url=service.base_url).save(
                "scan-tinker", overwrite=True
            )
            HuggingFaceCredentials(token=SecretStr(HF_TOKEN), endpoint=hub.url).save(
                "scan-hf", overwrite=True
            )
            creds = TinkerCredentials.load("scan-tinker")
            hf = HuggingFaceCredentials.load("scan-hf")
            params = {
                "base_model": "Qwen/Qwen3-0.6B",
                "dataset": str(dataset),
                "lora": TinkerLoraConfig(rank=4, seed=0),
                "learning_rate": 2e-2,
                "batch_size": 2,
                "max_steps": 2,
                "max_length": 48,
                "checkpoints": CheckpointPolicy(every=2, ttl_seconds=3600),
                "evaluation": EvalOptions(holdout_fraction=0.25),
                "run_key": "secret-scan",
            }
            result = sft_pipeline(
                credentials=creds,
                export=ExportOptions(
                    download_dir=str(work / "adapter"), hf_repo_id="me/scan", hf_credentials=hf
                ),
                **params,
            )
            texts["pipeline result"] = result.model_dump_json()
            assert result.adapter_dir and result.export, result
            assert hub.state.repos["me/scan"].commits, "the adapter was not pushed"

            wrong = TinkerCredentials(api_key=WRONG_KEY, base_url=service.base_url)
            state = sft_pipeline(
                credentials=wrong, **(params | {"run_key": "secret-wrong"}), return_state=True
            )
            assert state.is_failed()
            texts["failed run (wrong key)"] = _exception_text(state)
            state = sft_pipeline(
                credentials=creds,
                **(params | {"run_key": "secret-bad-model", "base_model": "No/Such-Model"}),
                return_state=True,
            )
            assert state.is_failed()
            texts["failed run (unknown model)"] = _exception_text(state)
            state = list_ghost_checkpoints(creds, return_state=True)
            assert state.is_failed()
            texts["failed run (unknown training run)"] = _exception_text(state)
            texts |= _cli_outputs(service, hub, result, work)
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = offline
    print(f"\nsecret scan: pipeline + 3 failing runs + CLI in {time.monotonic() - t0:.1f}s")
    _drain_prefect()
    return texts


@flow(name="secret-scan-list-ghost-checkpoints")
def list_ghost_checkpoints(credentials) -> None:
    """Fails on purpose: the service answers 404 for a run that does not exist."""
    from prefect_tinker.tasks.checkpoints import list_checkpoints

    list_checkpoints(credentials, "ghost:train:0")


def _exception_text(state) -> str:
    import traceback

    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - its text is what we scan
        return "".join(traceback.format_exception(exc)) + str(state.message)
    raise AssertionError("the failing run did not raise")


def _cli_outputs(service, hub, result, work: Path) -> dict[str, str]:
    """Run every non-interactive prefect-tinker command with the secrets in the environment."""
    from typer.testing import CliRunner

    from prefect_tinker.cli import app

    env = {
        "TINKER_API_KEY": TINKER_KEY,
        "TINKER_BASE_URL": service.base_url,
        "HF_TOKEN": HF_TOKEN,
        "HF_ENDPOINT": hub.url,
    }
    run_id = result.run_id
    external = result.external_path
    commands = [
        ["--help"],
        ["runs", "list"],
        ["runs", "list", "--format", "json"],
        ["checkpoints", "list", run_id],
        ["checkpoints", "list", "ghost:train:0"],
        ["download", external, str(work / "cli-adapter")],
        ["download", external, str(work / "cli-adapter"), "--format", "json"],
        ["inspect", str(work / "cli-adapter")],
        ["inspect", str(work / "cli-adapter"), "--format", "json", "--tensors"],
        ["ttl", external, "7200"],
        ["publish", external],
        ["unpublish", external],
        ["push-hf", str(work / "cli-adapter"), "me/scan-cli"],
        ["blocks", "--help"],
        ["local", "--help"],
    ]
    runner = CliRunner()
    out: dict[str, str] = {}
    codes = {}
    for argv in commands:
        res = runner.invoke(app, argv, env=env)
        codes[" ".join(argv[:2])] = res.exit_code
        out[f"CLI: prefect-tinker {' '.join(argv)}"] = res.output + repr(res.exception or "")
    res = runner.invoke(app, ["runs", "list"], env=env | {"TINKER_API_KEY": WRONG_KEY})
    assert res.exit_code == 2, res.output
    out["CLI: runs list (rejected key)"] = res.output + repr(res.exception or "")
    assert codes["runs list"] == 0 and codes["download " + external] == 0, codes
    # One real process too: the console script, with the key only in its environment.
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "prefect-tinker"), "runs", "list"],
        env={**os.environ, **env, "TINKER_API_KEY": WRONG_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "error:" in proc.stderr, proc.stderr
    out["CLI process: runs list (rejected key)"] = proc.stdout + proc.stderr
    return out


def _drain_prefect() -> None:
    """Send every buffered log and event to the server before the scan reads them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()


def _api_texts() -> tuple[dict[str, str], dict[str, int]]:
    """Logs, artifacts, flow/task runs (parameters, states) and events, via the Prefect API."""
    from prefect.client.orchestration import get_client

    texts: dict[str, str] = {}
    counts: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while page := client.read_logs(limit=200, offset=offset):
            logs += page
            offset += len(page)
        texts["logs"] = "\n".join(f"{log.name} {log.message}" for log in logs)
        counts["logs"] = len(logs)
        artifacts = client.read_artifacts()
        texts["artifacts"] = "\n".join(a.model_dump_json() for a in artifacts)
        counts["artifacts"] = len(artifacts)
        flow_runs = client.read_flow_runs(limit=200)
        texts["flow runs"] = "\n".join(r.model_dump_json() for r in flow_runs)
        counts["flow runs"] = len(flow_runs)
        task_runs = client.read_task_runs(limit=200)
        texts["task runs"] = "\n".join(r.model_dump_json() for r in task_runs)
        counts["task runs"] = len(task_runs)
        # The server stores events in batches: wait (bounded) until the flow runs' are in.
        deadline = time.monotonic() + 60
        while True:
            page = client.read_events(limit=50)
            events = list(page.events)
            while page.next_page:
                page = client.read_events_page(page.next_page)
                events += page.events
            finished = sum(e.event == "prefect.flow-run.Failed" for e in events)
            if finished >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        texts["events"] = "\n".join(e.model_dump_json() for e in events)
        counts["events"] = len(events)
    return texts, counts


PERSISTED = "persisted Prefect results"


@pytest.fixture(scope="module")
def scan(runs, prefect_db, service) -> dict[str, list[str]]:
    """Every place searched -> what was found there."""
    found: dict[str, list[str]] = {}
    for where, text in runs.items():
        found.setdefault("run/CLI texts", []).extend(leaks(where, text))
    api_texts, counts = _api_texts()
    for where, text in api_texts.items():
        found.setdefault(f"Prefect API {where}", []).extend(leaks(where, text))
    prefect_home = Path(os.environ["PREFECT_HOME"])
    storage = prefect_home / "storage"
    trees = {
        "Prefect database dir": prefect_db,
        "PREFECT_HOME": prefect_home,
        "PREFECT_TINKER_HOME": Path(os.environ["PREFECT_TINKER_HOME"]),
        "local service data dir": service.data_dir,
    }
    files = {}
    for where, root in trees.items():
        tree_found, files[where] = scan_tree(root)
        for item in tree_found:
            bucket = PERSISTED if str(storage) in item else where
            found.setdefault(bucket, []).append(item)
    total = sum(len(v) for v in found.values())
    print(
        f"\nsecret scan: {len(SECRETS)} secrets x {len(NEEDLES) // len(SECRETS)} encodings; "
        f"scanned {counts} via the API, {files} files, {len(runs)} run/CLI texts; "
        f"found {total}: " + json.dumps({k: len(v) for k, v in found.items() if v})
    )
    assert counts["logs"] > 0 and counts["flow runs"] >= 5 and counts["artifacts"] > 0
    assert counts["events"] > 0
    assert any(p.name.endswith(".db") for p in prefect_db.iterdir())
    return found


def test_no_secret_in_the_database_logs_artifacts_runs_events_files_or_cli(scan) -> None:
    others = [item for where, items in scan.items() if where != PERSISTED for item in items]
    assert others == [], "\n".join(others)


# Found by this scan: a failed task's raw SDK exception (holding the request's X-API-Key header)
# was pickled by Prefect into PREFECT_HOME/storage; tasks raise typed errors since aa8102e.
def test_no_secret_in_persisted_prefect_results(scan) -> None:
    assert scan.get(PERSISTED, []) == [], "\n".join(scan[PERSISTED])


def test_block_documents_hold_the_secrets_only_encrypted(runs, prefect_db) -> None:
    """The saved blocks load back with their secrets (so the scan above was not vacuous)."""
    from prefect_tinker import HuggingFaceCredentials, TinkerCredentials

    assert TinkerCredentials.load("scan-tinker").api_key.get_secret_value() == TINKER_KEY
    assert HuggingFaceCredentials.load("scan-hf").token.get_secret_value() == HF_TOKEN
    db = next(p for p in prefect_db.iterdir() if p.name.endswith(".db")).read_bytes()
    assert b"scan-tinker" in db  # the block document is in the database, its secret is not
    assert not leaks("Prefect database", db)
