"""End to end on the local service: train a few steps through the SDK, then download.

The downloaded adapter loads with peft and gives the service's log-probabilities; a cut
transfer resumes; a second download moves no bytes; a training checkpoint is exported
encrypted, decrypted locally, and its temporary export deleted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tinker import types

from prefect_tinker.errors import CheckpointNotFound, UnsupportedCheckpointError
from prefect_tinker.export import Manifest, download, validate_adapter
from prefect_tinker.local import FaultConfig

BASE = "Qwen/Qwen3-0.6B"


def _peft_logprobs(adapter_dir: Path, datum: types.Datum) -> np.ndarray:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prefect_tinker.local.basemodels import BaseModels
    from prefect_tinker.local.server import engine_cache_dir

    base = AutoModelForCausalLM.from_pretrained(BaseModels(engine_cache_dir()).standin_dir(BASE))
    model = PeftModel.from_pretrained(base.eval(), str(adapter_dir)).eval()
    tokens = datum.model_input.to_ints()
    targets = torch.tensor(datum.loss_fn_inputs["target_tokens"].to_numpy())
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0]
    return torch.log_softmax(logits.float(), -1)[torch.arange(len(tokens)), targets].numpy()


def test_external_download_loads_in_peft_with_the_services_logprobs(trained, tmp_path):
    manifest = download(trained.rest, trained.external_path, tmp_path / "ext")

    assert [f.path for f in manifest.files] == ["adapter_config.json", "adapter_model.safetensors"]
    assert manifest.bytes_transferred == manifest.total_size > 0
    report = validate_adapter(tmp_path / "ext")
    assert report.info.rank == 4 and report.info.base_model == BASE

    loaded = trained.service.create_training_client_from_state(trained.state_path).result()
    service_lp = loaded.forward([trained.datum], "cross_entropy").result()
    expected = service_lp.loss_fn_outputs[0]["logprobs"].to_numpy()
    np.testing.assert_allclose(_peft_logprobs(tmp_path / "ext", trained.datum), expected, atol=1e-4)


def test_training_checkpoint_is_exported_encrypted_and_cleaned_up(trained, tmp_path):
    external = download(trained.rest, trained.external_path, tmp_path / "ext")

    manifest = download(trained.rest, trained.state_path, tmp_path / "w", service=trained.service)

    assert manifest.tinker_path == trained.state_path
    assert {f.path: f.sha256 for f in manifest.files} == {
        f.path: f.sha256 for f in external.files
    }  # same training state, so the decrypted adapter is byte-identical
    leftovers = [
        c.tinker_path
        for c in trained.rest.list_user_checkpoints(limit=1000).result().checkpoints
        if "/external_weights/export-" in c.tinker_path
    ]
    assert leftovers == []


def test_cut_transfers_resume_and_resend_at_most_5_percent(trained, tmp_path, local_tinker):
    before_bytes, before_cuts = local_tinker.stats.bytes_served, local_tinker.stats.downloads_cut
    local_tinker.faults = FaultConfig(cut_downloads=True)
    try:
        manifest = download(trained.rest, trained.external_path, tmp_path / "cut")
    finally:
        local_tinker.faults = FaultConfig()

    served = local_tinker.stats.bytes_served - before_bytes
    assert local_tinker.stats.downloads_cut - before_cuts == len(manifest.files)
    assert manifest.total_size <= served <= 1.05 * manifest.total_size
    assert Manifest.read(tmp_path / "cut").bad_files(tmp_path / "cut") == []


def test_second_download_transfers_zero_bytes(trained, tmp_path, local_tinker):
    download(trained.rest, trained.external_path, tmp_path / "a")
    before = local_tinker.stats.bytes_served

    again = download(trained.rest, trained.external_path, tmp_path / "a")

    assert again.bytes_transferred == 0
    assert local_tinker.stats.bytes_served == before


def test_sampler_and_unknown_checkpoints_get_clear_errors(trained, tmp_path):
    with pytest.raises(UnsupportedCheckpointError, match="weights/<name>"):
        download(trained.rest, trained.sampler_path, tmp_path / "s")
    missing = trained.external_path.rsplit("/", 1)[0] + "/nope"
    with pytest.raises(CheckpointNotFound, match="nope"):
        download(trained.rest, missing, tmp_path / "m")
    assert not (tmp_path / "m").exists()
