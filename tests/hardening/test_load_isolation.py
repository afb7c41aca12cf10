"""16 concurrent SDK clients (two API keys) on one local service, in two waves: zero errors, no
cross-owner visibility, every checkpoint listed and loadable afterwards, bounded memory (the
second wave does not grow RSS much: finished sessions release their runs)."""

from __future__ import annotations

import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import tinker
from hardening_helpers import ALICE, BASE_MODEL, BOB, current_rss_mb, peak_rss_mb, tiny_datums

CLIENTS = 16
STEPS = 2
PEAK_RSS_BOUND_MB = 6144  # generous: the whole test process, torch and 16 LoRA runs included
WAVE_GROWTH_BOUND_MB = 256  # a second wave of 16 runs, after the first one's sessions closed


@dataclass
class ClientRun:
    index: int
    key: str
    run_id: str
    state: str
    sampler: str
    external: str
    downloaded: bytes
    sampled: list[int]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A dedicated service, so the shared session one keeps its state and counters."""
    from prefect_tinker.local import LocalTinker

    with LocalTinker(tmp_path_factory.mktemp("load-tinker"), api_keys=(ALICE, BOB)) as svc:
        yield svc


def one_client(base_url: str, index: int, start: threading.Barrier) -> ClientRun:
    """Create a run, train, save three ways, sample, fetch the external URLs, download a file."""
    key = ALICE if index % 2 == 0 else BOB
    service = tinker.ServiceClient(base_url=base_url, api_key=key)
    rest = tinker.RestClient(base_url=base_url, api_key=key)
    try:
        start.wait(60)
        tc = service.create_lora_training_client(BASE_MODEL, rank=2, seed=index).result()
        datums = tiny_datums(2, 8, seed=index)
        for _ in range(STEPS):
            fb = tc.forward_backward(datums, "cross_entropy")
            opt = tc.optim_step(tinker.AdamParams(learning_rate=1e-2))
            fb.result()
            opt.result()
        state = tc.save_state(f"state-{index}").result().path
        sampler = tc.save_weights_for_sampler(f"sampler-{index}").result().path
        external = tc.save_weights_external(f"external-{index}").result().path
        sampling = service.create_sampling_client(model_path=sampler).result()
        out = sampling.sample(
            tinker.ModelInput.from_ints([11, 12, 13]),
            1,
            tinker.SamplingParams(max_tokens=2, seed=index),
        ).result()
        urls = rest.get_external_weights_urls(external).result().urls
        r = httpx.get(urls["adapter_config.json"], timeout=30, trust_env=False)
        r.raise_for_status()
        return ClientRun(
            index,
            key,
            tc.model_id,
            state,
            sampler,
            external,
            r.content,
            list(out.sequences[0].tokens),
        )
    finally:
        service.close("success").result(timeout=60)


def one_wave(base_url: str, first: int) -> tuple[list[ClientRun], list[str], float]:
    """CLIENTS clients at once (indices first..first+CLIENTS-1); results, errors, seconds."""
    start = threading.Barrier(CLIENTS)
    t0 = time.monotonic()
    errors: list[str] = []
    runs: list[ClientRun] = []
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(one_client, base_url, i, start) for i in range(first, first + CLIENTS)
        ]
        for i, fut in enumerate(futures, start=first):
            try:
                runs.append(fut.result(timeout=240))
            except Exception:
                errors.append(f"client {i}: {traceback.format_exc()}")
    return runs, errors, time.monotonic() - t0


@pytest.fixture(scope="module")
def load_run(service):
    """Two waves of 16 clients; the second shows memory does not grow with finished runs."""
    baseline_rss = current_rss_mb()
    runs, errors, seconds = one_wave(service.base_url, 0)
    after_first = current_rss_mb()
    runs2, errors2, seconds2 = one_wave(service.base_url, CLIENTS)
    after_second = current_rss_mb()
    peak = peak_rss_mb()
    print(
        f"\nload: {CLIENTS} clients x {STEPS} steps + 3 saves + sample + download: wave 1 "
        f"{seconds:.1f}s, wave 2 {seconds2:.1f}s; errors={len(errors) + len(errors2)}; "
        f"peak RSS {peak:.0f} MiB (RSS before {baseline_rss:.0f} MiB, after wave 1 "
        f"{after_first:.0f} MiB, after wave 2 {after_second:.0f} MiB); "
        f"requests={sum(service.stats.requests.values())}"
    )
    return runs + runs2, errors + errors2, peak, after_second - after_first


def test_sixteen_concurrent_clients_have_zero_errors(load_run, service) -> None:
    runs, errors, peak, growth = load_run
    assert errors == [], "\n".join(errors)
    assert len(runs) == 2 * CLIENTS
    assert peak < PEAK_RSS_BOUND_MB, f"peak RSS {peak:.0f} MiB over {PEAK_RSS_BOUND_MB} MiB"
    assert growth < WAVE_GROWTH_BOUND_MB, f"RSS grew {growth:.0f} MiB over the second wave"
    for run in runs:
        assert service.stats.optim_steps[run.run_id] == STEPS
        assert b'"r": 2' in run.downloaded or b'"r":2' in run.downloaded
        assert len(run.sampled) >= 1
    assert len({r.run_id for r in runs}) == 2 * CLIENTS


def test_each_key_lists_only_its_own_runs_and_checkpoints(load_run, service) -> None:
    runs, errors, _, _ = load_run
    assert not errors
    for key in (ALICE, BOB):
        rest = tinker.RestClient(base_url=service.base_url, api_key=key)
        mine = [r for r in runs if r.key == key]
        listed = rest.list_training_runs(limit=100).result().training_runs
        assert {r.training_run_id for r in listed} == {r.run_id for r in mine}
        checkpoints = rest.list_user_checkpoints(limit=1000).result().checkpoints
        expected = {p for r in mine for p in (r.state, r.sampler, r.external)}
        assert {c.tinker_path for c in checkpoints} == expected


def test_the_other_key_gets_404_on_private_checkpoints(load_run, service) -> None:
    runs, errors, _, _ = load_run
    assert not errors
    for key in (ALICE, BOB):
        other = [r for r in runs if r.key != key]
        rest = tinker.RestClient(base_url=service.base_url, api_key=key)
        client = tinker.ServiceClient(base_url=service.base_url, api_key=key)
        try:
            for run in other[:4]:
                with pytest.raises(tinker.NotFoundError):
                    rest.get_training_run(run.run_id).result()
                with pytest.raises(tinker.NotFoundError):
                    rest.list_checkpoints(run.run_id).result()
                with pytest.raises(tinker.NotFoundError):
                    rest.get_external_weights_urls(run.external).result()
                with pytest.raises(tinker.NotFoundError):
                    rest.get_weights_info_by_tinker_path(run.state).result()
                with pytest.raises(tinker.NotFoundError):
                    client.create_training_client_from_state(run.state).result()
                with pytest.raises(tinker.NotFoundError):
                    client.create_sampling_client(model_path=run.sampler).result()
            # Raw HTTP too: the listing routes never show another key's paths.
            r = httpx.get(
                f"{service.base_url}/api/v1/checkpoints?limit=1000",
                headers={"X-API-Key": key},
                trust_env=False,
            )
            text = r.text
            assert r.status_code == 200
            assert not [run.run_id for run in other if run.run_id in text]
        finally:
            client.close("success").result(timeout=60)


def test_every_checkpoint_is_listed_and_loadable_afterwards(load_run, service) -> None:
    runs, errors, _, _ = load_run
    assert not errors
    for key in (ALICE, BOB):
        mine = [r for r in runs if r.key == key]
        rest = tinker.RestClient(base_url=service.base_url, api_key=key)
        client = tinker.ServiceClient(base_url=service.base_url, api_key=key)
        try:
            for run in mine:
                listed = {
                    c.tinker_path for c in rest.list_checkpoints(run.run_id).result().checkpoints
                }
                assert listed == {run.state, run.sampler, run.external}
            loads = [client.create_training_client_from_state(r.state) for r in mine]
            for run, fut in zip(mine, loads, strict=True):
                loaded = fut.result()
                assert loaded.get_info().lora_rank == 2, run.state
            sampler = client.create_sampling_client(model_path=mine[0].sampler).result()
            again = sampler.sample(
                tinker.ModelInput.from_ints([11, 12, 13]),
                1,
                tinker.SamplingParams(max_tokens=2, seed=mine[0].index),
            ).result()
            assert list(again.sequences[0].tokens) == mine[0].sampled
            for run in mine:
                urls = rest.get_external_weights_urls(run.external).result().urls
                assert set(urls) >= {"adapter_config.json", "adapter_model.safetensors"}
        finally:
            client.close("success").result(timeout=60)
