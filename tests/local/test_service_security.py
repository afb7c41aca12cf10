"""API keys, ownership and publication on the local service."""

from __future__ import annotations

import httpx
import pytest
import tinker
from service_helpers import BASE, adam, chat_datums

ALICE, BOB = "tml-test-alice", "tml-test-bob"


@pytest.fixture(scope="module")
def alice_run(local_tinker):
    service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=ALICE)
    tc = service.create_lora_training_client(BASE, rank=4, seed=1).result()
    datums = chat_datums(tc.get_tokenizer())
    tc.forward_backward(datums[:2], "cross_entropy").result()
    tc.optim_step(adam()).result()
    state = tc.save_state("private").result().path
    sampler = tc.save_weights_for_sampler("shared").result().path
    external = tc.save_weights_external("shared-hf").result().path
    yield tc.model_id, state, sampler, external
    service.close("success").result()


def test_an_unknown_key_gets_401_json(local_tinker) -> None:
    with pytest.raises(tinker.AuthenticationError):
        tinker.RestClient(
            base_url=local_tinker.base_url, api_key="tml-nobody"
        ).list_training_runs().result()
    r = httpx.get(f"{local_tinker.base_url}/api/v1/training_runs", trust_env=False)
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]


def test_another_key_sees_404_for_private_runs_and_checkpoints(local_tinker, alice_run) -> None:
    run_id, state, sampler, external = alice_run
    bob = tinker.RestClient(base_url=local_tinker.base_url, api_key=BOB)
    assert run_id not in {
        r.training_run_id for r in bob.list_training_runs(limit=100).result().training_runs
    }
    with pytest.raises(tinker.NotFoundError):
        bob.get_training_run(run_id).result()
    with pytest.raises(tinker.NotFoundError):
        bob.list_checkpoints(run_id).result()
    with pytest.raises(tinker.NotFoundError):
        bob.get_external_weights_urls(external).result()
    with pytest.raises(tinker.NotFoundError):
        bob.publish_checkpoint_from_tinker_path(sampler).result()
    bob_service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=BOB)
    with pytest.raises(tinker.NotFoundError):
        bob_service.create_training_client_from_state(state).result()
    with pytest.raises(tinker.NotFoundError):
        bob_service.create_sampling_client(model_path=sampler).result()
    bob_service.close("success").result()


def test_published_checkpoints_are_readable_and_usable_by_every_key(
    local_tinker, alice_run
) -> None:
    run_id, state, sampler, external = alice_run
    alice = tinker.RestClient(base_url=local_tinker.base_url, api_key=ALICE)
    bob = tinker.RestClient(base_url=local_tinker.base_url, api_key=BOB)
    for path in (state, sampler, external):
        alice.publish_checkpoint_from_tinker_path(path).result()
    try:
        assert run_id in {
            r.training_run_id
            for r in bob.list_training_runs(limit=100, access_scope="accessible")
            .result()
            .training_runs
        }
        assert run_id not in {
            r.training_run_id for r in bob.list_training_runs(limit=100).result().training_runs
        }
        assert len(bob.list_checkpoints(run_id).result().checkpoints) == 3
        urls = bob.get_external_weights_urls(external).result().urls
        assert httpx.get(urls["adapter_config.json"], trust_env=False).status_code == 200
        bob_service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=BOB)
        loaded = bob_service.create_training_client_from_state(state).result()
        assert bob.get_training_run(loaded.model_id).result().model_owner != (
            alice.get_training_run(run_id).result().model_owner
        )
        sampler_client = bob_service.create_sampling_client(model_path=sampler).result()
        out = sampler_client.sample(
            tinker.types.ModelInput.from_ints([1, 2, 3]),
            1,
            tinker.types.SamplingParams(max_tokens=2),
        ).result()
        assert len(out.sequences) == 1
        with pytest.raises(tinker.NotFoundError):
            bob.delete_checkpoint_from_tinker_path(state).result()
        bob_service.close("success").result()
    finally:
        for path in (state, sampler, external):
            alice.unpublish_checkpoint_from_tinker_path(path).result()
    with pytest.raises(tinker.NotFoundError):
        bob.list_checkpoints(run_id).result()
