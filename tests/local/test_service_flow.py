"""The whole SDK flow against the local service, through the unmodified `tinker` SDK."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pytest
import tinker
from service_helpers import BASE, SEED, adam, batch, chat_datums, download_external, train_steps
from tinker import types

from prefect_tinker.local import FaultConfig

STEPS = 20


@dataclass
class Trained:
    service: tinker.ServiceClient
    rest: tinker.RestClient
    tc: tinker.TrainingClient
    datums: list[types.Datum]
    losses: list[float]
    state_path: str
    sampler_path: str
    external_path: str
    step5_external: dict[str, bytes]
    next_loss: float
    seconds: float


@pytest.fixture(scope="module")
def trained(local_tinker) -> Trained:
    t0 = time.monotonic()
    service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    rest = tinker.RestClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
    caps = service.get_server_capabilities()
    assert BASE in {m.model_name for m in caps.supported_models}
    tc = service.create_lora_training_client(
        base_model=BASE, rank=8, seed=SEED, user_metadata={"run_key": "flow"}
    ).result()
    datums = chat_datums(tc.get_tokenizer())
    losses = train_steps(tc, datums, 0, 5)
    step5 = tc.save_weights_external("step-5-hf").result().path
    losses += train_steps(tc, datums, 5, STEPS)
    state = tc.save_state("final", user_metadata={"next_batch": str(STEPS)}).result().path
    sampler = tc.save_weights_for_sampler("final").result().path
    external = tc.save_weights_external("final-hf", ttl_seconds=7200).result().path
    # The uninterrupted run's next step, then the loss it leads to.
    tc.forward_backward(batch(datums, STEPS), "cross_entropy").result()
    tc.optim_step(adam()).result()
    next_loss = tc.forward(batch(datums, STEPS + 1), "cross_entropy").result().metrics["loss:sum"]
    return Trained(
        service,
        rest,
        tc,
        datums,
        losses,
        state,
        sampler,
        external,
        download_external(rest, step5),
        next_loss,
        time.monotonic() - t0,
    )


def test_training_through_the_sdk_lowers_the_loss(trained: Trained, local_tinker) -> None:
    print(f"20-step flow (create, train, 3 saves, 1 more step): {trained.seconds:.1f}s")
    assert len(trained.losses) == STEPS
    assert trained.losses[-1] < 0.5 * trained.losses[0], trained.losses
    assert local_tinker.stats.optim_steps[trained.tc.model_id] == STEPS + 1
    info = trained.tc.get_info()
    assert "stand-in" in info.model_data.arch
    assert info.lora_rank == 8


def test_external_weights_download_and_load_in_peft_with_equal_logits(trained: Trained) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prefect_tinker.local.basemodels import BaseModels
    from prefect_tinker.local.server import engine_cache_dir

    files = download_external(trained.rest, trained.external_path)
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads(files["adapter_config.json"])
    assert config["base_model_name_or_path"] == BASE and config["r"] == 8

    tmp = engine_cache_dir().parent / "peft-check"
    tmp.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    base = AutoModelForCausalLM.from_pretrained(BaseModels(engine_cache_dir()).standin_dir(BASE))
    model = PeftModel.from_pretrained(base.eval(), str(tmp)).eval()
    # The external checkpoint was taken before the extra step: compare with a fresh load of it.
    datum = trained.datums[0]
    tokens = datum.model_input.to_ints()
    targets = datum.loss_fn_inputs["target_tokens"].to_numpy()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0]
    peft_lp = torch.log_softmax(logits.float(), -1)[
        torch.arange(len(tokens)), torch.tensor(targets)
    ]
    resumed = trained.service.create_training_client_from_state(trained.state_path).result()
    out = resumed.forward([datum], "cross_entropy").result()
    service_lp = out.loss_fn_outputs[0]["logprobs"].to_numpy()
    np.testing.assert_allclose(service_lp, peft_lp.numpy(), atol=1e-4)


def test_resume_with_optimizer_gives_the_uninterrupted_next_loss_exactly(trained: Trained) -> None:
    tc = trained.service.create_training_client_from_state_with_optimizer(
        trained.state_path
    ).result()
    assert tc.model_id.endswith(f":train:{tc.model_id.rsplit(':', 1)[1]}")
    tc.forward_backward(batch(trained.datums, STEPS), "cross_entropy").result()
    tc.optim_step(adam()).result()
    loss = (
        tc.forward(batch(trained.datums, STEPS + 1), "cross_entropy").result().metrics["loss:sum"]
    )
    assert loss == trained.next_loss


def test_sample_from_the_sampler_checkpoint(trained: Trained) -> None:
    sampler = trained.service.create_sampling_client(model_path=trained.sampler_path).result()
    prompt = trained.datums[0].model_input
    params = types.SamplingParams(max_tokens=6, seed=3, temperature=0.7)
    result = sampler.sample(prompt, num_samples=2, sampling_params=params).result()
    assert len(result.sequences) == 2
    assert all(
        1 <= len(s.tokens) <= 6 and len(s.logprobs) == len(s.tokens) for s in result.sequences
    )
    again = sampler.sample(prompt, num_samples=2, sampling_params=params).result()
    assert [s.tokens for s in again.sequences] == [s.tokens for s in result.sequences]
    logprobs = sampler.compute_logprobs(types.ModelInput.from_ints([1, 2, 3, 4])).result()
    assert logprobs[0] is None and all(isinstance(v, float) for v in logprobs[1:])
    ephemeral = trained.tc.save_weights_and_get_sampling_client()
    out = ephemeral.sample(prompt, 1, types.SamplingParams(max_tokens=3, seed=1)).result()
    assert len(out.sequences) == 1


def test_runs_and_checkpoints_listing_publish_ttl_delete(trained: Trained) -> None:
    rest = trained.rest
    run_id = trained.tc.model_id
    run = rest.get_training_run(run_id).result()
    assert run.base_model == BASE and run.lora_rank == 8
    assert run.user_metadata == {"run_key": "flow"}
    assert run.last_checkpoint is not None and run.last_checkpoint.checkpoint_id == "weights/final"
    ids = [c.checkpoint_id for c in rest.list_checkpoints(run_id).result().checkpoints]
    assert {"weights/final", "sampler_weights/final", "external_weights/final-hf"} <= set(ids)
    page = rest.list_training_runs(limit=1, offset=0).result()
    assert len(page.training_runs) == 1 and page.cursor.total_count >= 1
    user = rest.list_user_checkpoints(limit=2, offset=0).result()
    assert len(user.checkpoints) == 2 and user.cursor.total_count >= 4
    times = [c.time for c in user.checkpoints]
    assert times == sorted(times, reverse=True)
    final = next(
        c
        for c in rest.list_checkpoints(run_id).result().checkpoints
        if c.checkpoint_id == "weights/final"
    )
    assert final.user_metadata == {"next_batch": str(STEPS)}

    rest.publish_checkpoint_from_tinker_path(trained.sampler_path).result()
    rest.publish_checkpoint_from_tinker_path(trained.sampler_path).result()  # idempotent
    listed = {c.checkpoint_id: c for c in rest.list_checkpoints(run_id).result().checkpoints}
    assert listed["sampler_weights/final"].public
    rest.unpublish_checkpoint_from_tinker_path(trained.sampler_path).result()
    rest.unpublish_checkpoint_from_tinker_path(trained.sampler_path).result()
    listed = {c.checkpoint_id: c for c in rest.list_checkpoints(run_id).result().checkpoints}
    assert not listed["sampler_weights/final"].public
    assert listed["external_weights/final-hf"].expires_at is not None

    rest.set_checkpoint_ttl_from_tinker_path(trained.sampler_path, 3600).result()
    listed = {c.checkpoint_id: c for c in rest.list_checkpoints(run_id).result().checkpoints}
    assert listed["sampler_weights/final"].expires_at is not None
    rest.set_checkpoint_ttl_from_tinker_path(trained.sampler_path, None).result()
    with pytest.raises(tinker.BadRequestError, match="ttl_seconds=60"):
        rest.set_checkpoint_ttl_from_tinker_path(trained.sampler_path, 60).result()

    doomed = trained.tc.save_state("doomed").result().path
    rest.delete_checkpoint_from_tinker_path(doomed).result()
    ids = [c.checkpoint_id for c in rest.list_checkpoints(run_id).result().checkpoints]
    assert "weights/doomed" not in ids
    with pytest.raises(tinker.NotFoundError):
        rest.delete_checkpoint_from_tinker_path(doomed).result()
    info = rest.get_weights_info_by_tinker_path(trained.state_path).result()
    assert info.base_model == BASE and info.lora_rank == 8


def test_injected_faults_do_not_change_the_adapter_bytes(trained: Trained, local_tinker) -> None:
    t0 = time.monotonic()
    local_tinker.faults = FaultConfig(rate=0.1, seed=11, cut_downloads=True)
    try:
        service = tinker.ServiceClient(base_url=local_tinker.base_url, api_key=local_tinker.api_key)
        tc = service.create_lora_training_client(base_model=BASE, rank=8, seed=SEED).result()
        train_steps(tc, trained.datums, 0, 5)
        path = tc.save_weights_external("step-5-hf").result().path
        files = download_external(trained.rest, path)
        stats = local_tinker.stats
        assert sum(stats.faults.values()) >= 3, stats.faults
        assert stats.downloads_cut >= 1
        service.close("success").result()
    finally:
        local_tinker.faults = FaultConfig()
    elapsed = time.monotonic() - t0
    print(f"5 steps + save + download, 10% faults: {elapsed:.1f}s, {dict(stats.faults)}")
    assert files == trained.step5_external


def test_chunked_forward_backward_arriving_out_of_order_matches_one_chunk(
    trained: Trained, local_tinker
) -> None:
    local_tinker.fwdbwd_max_chunk_len = 1
    try:
        chunked_service = tinker.ServiceClient(
            base_url=local_tinker.base_url, api_key=local_tinker.api_key
        )
        chunked = chunked_service.create_lora_training_client(BASE, rank=8, seed=SEED).result()
    finally:
        local_tinker.fwdbwd_max_chunk_len = 1024
    whole = trained.service.create_lora_training_client(BASE, rank=8, seed=SEED).result()
    data = batch(trained.datums, 0)
    before = local_tinker.stats.reordered
    a = chunked.forward_backward(data, "cross_entropy").result()
    assert local_tinker.stats.reordered > before  # chunks 2..4 came before chunk 1
    b = whole.forward_backward(data, "cross_entropy").result()
    assert len(a.loss_fn_outputs) == len(b.loss_fn_outputs) == 4
    for x, y in zip(a.loss_fn_outputs, b.loss_fn_outputs, strict=True):
        np.testing.assert_allclose(x["logprobs"].to_numpy(), y["logprobs"].to_numpy(), atol=1e-6)
    assert a.metrics["loss:sum"] == pytest.approx(b.metrics["loss:sum"], rel=1e-6)
    chunked.optim_step(adam()).result()
    whole.optim_step(adam()).result()
    la = chunked.forward(data, "cross_entropy").result().metrics["loss:sum"]
    lb = whole.forward(data, "cross_entropy").result().metrics["loss:sum"]
    assert la == pytest.approx(lb, rel=1e-5)
    chunked_service.close("success").result()


def test_legacy_load_state_replaces_an_existing_models_weights(trained: Trained) -> None:
    fresh = trained.service.create_lora_training_client(BASE, rank=8, seed=SEED + 1).result()
    fresh.load_state_with_optimizer(trained.state_path).result()
    resumed = trained.service.create_training_client_from_state(trained.state_path).result()
    data = batch(trained.datums, 3)
    a = fresh.forward(data, "cross_entropy").result().metrics["loss:sum"]
    b = resumed.forward(data, "cross_entropy").result().metrics["loss:sum"]
    assert a == b


def test_fixed_latency_delays_every_future(trained: Trained, local_tinker) -> None:
    tc = trained.service.create_lora_training_client(BASE, rank=4, seed=9).result()
    fb = tc.forward_backward(batch(trained.datums, 0), "cross_entropy")
    fb.result()
    local_tinker.faults = FaultConfig(latency_s=0.5)
    try:
        t0 = time.monotonic()
        tc.optim_step(adam()).result()
        elapsed = time.monotonic() - t0
    finally:
        local_tinker.faults = FaultConfig()
    assert elapsed >= 0.5
