"""The local training engine: determinism, exact resume, Tinker loss semantics, PEFT output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from prefect_tinker.local.basemodels import (
    FAMILIES,
    STANDINS,
    _native_tokenizer,
    highest_token_id,
    write_tiny_qwen3,
)
from prefect_tinker.local.engine import (
    MICROBATCH_TOKENS,
    AdamParams,
    DatumArrays,
    Engine,
    EngineError,
    LoraSpec,
)

BASE = "Qwen/Qwen3-0.6B"
ADAM = AdamParams(learning_rate=1e-2, weight_decay=0.01, grad_clip_norm=1.0)


def make_datum(tokens: list[int], weights: list[float] | None = None) -> DatumArrays:
    """A next-token-prediction datum over `tokens` (input tokens[:-1], targets tokens[1:])."""
    n = len(tokens) - 1
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    return DatumArrays(
        tokens=np.asarray(tokens[:-1], np.int32),
        loss_fn_inputs={"target_tokens": np.asarray(tokens[1:], np.int64), "weights": w},
    )


def batch(seed: int, size: int = 2, length: int = 17) -> list[DatumArrays]:
    rng = np.random.default_rng(seed)
    return [make_datum(rng.integers(0, 151_000, length).tolist()) for _ in range(size)]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def train(run, steps: int, first_batch: int = 0) -> list[float]:
    losses = []
    for step in range(first_batch, first_batch + steps):
        # Two forward_backward calls per step: chunks of one step accumulate.
        data = batch(step)
        first = run.forward_backward(data[:1], "cross_entropy", {})
        second = run.forward_backward(data[1:], "cross_entropy", {})
        run.optim_step(ADAM)
        losses.append(first.metrics["loss:sum"] + second.metrics["loss:sum"])
    return losses


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(tmp_path_factory.getbasetemp() / "engine-cache")


@pytest.fixture
def base_model(engine: Engine) -> torch.nn.Module:
    """The stand-in's cached weights loaded independently of the engine, as a user would."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(engine.models.standin_dir(BASE)).eval()


def test_stand_in_is_described_as_one_and_exports_its_tokenizer(engine: Engine) -> None:
    info = engine.base_model_info(BASE)
    assert info.kind == "stand-in"
    assert "stand-in" in info.description
    assert info.max_context_length == 32768
    assert info.tokenizer_dir is not None
    assert (info.tokenizer_dir / "tokenizer.json").is_file()
    assert BASE in STANDINS


@pytest.mark.parametrize("family", ["qwen3", "gpt_oss", "deepseek_v3", "kimi_k2"])
def test_stand_in_vocabulary_covers_every_token_id(family: str) -> None:
    highest = highest_token_id(_native_tokenizer(FAMILIES[family]))
    assert FAMILIES[family].real_vocab_size > highest


def test_same_seed_gives_identical_bytes_and_resume_with_optimizer_is_exact(
    engine: Engine, tmp_path: Path
) -> None:
    straight = engine.create(BASE, LoraSpec(rank=4, seed=7))
    train(straight, 3)
    straight.save_adapter(tmp_path / "straight-adapter")
    straight.save_state(tmp_path / "straight-state")

    interrupted = engine.create(BASE, LoraSpec(rank=4, seed=7))
    train(interrupted, 2)
    interrupted.save_state(tmp_path / "at-2")
    interrupted.close()

    resumed = engine.load(tmp_path / "at-2", with_optimizer=True)
    assert resumed.step == 2 and resumed.lora == LoraSpec(rank=4, seed=7)
    train(resumed, 1, first_batch=2)
    resumed.save_adapter(tmp_path / "resumed-adapter")
    resumed.save_state(tmp_path / "resumed-state")

    assert files(tmp_path / "resumed-adapter") == files(tmp_path / "straight-adapter")
    assert files(tmp_path / "resumed-state") == files(tmp_path / "straight-state")

    fresh_optimizer = engine.load(tmp_path / "at-2", with_optimizer=False)
    train(fresh_optimizer, 1, first_batch=2)
    fresh_optimizer.save_adapter(tmp_path / "fresh-adapter")
    assert files(tmp_path / "fresh-adapter") != files(tmp_path / "straight-adapter")

    other_seed = engine.create(BASE, LoraSpec(rank=4, seed=8))
    other_seed.save_adapter(tmp_path / "other-seed")
    assert files(tmp_path / "other-seed") != files(tmp_path / "straight-adapter")
    for run in (straight, resumed, fresh_optimizer, other_seed):
        run.close()


def test_seed_none_is_chosen_and_recorded(engine: Engine, tmp_path: Path) -> None:
    run = engine.create(BASE, LoraSpec(rank=2, seed=None, train_mlp=False, train_unembed=False))
    assert isinstance(run.lora.seed, int)
    run.save_state(tmp_path)
    assert json.loads((tmp_path / "state.json").read_text())["lora"]["seed"] == run.lora.seed
    run.close()


def test_cross_entropy_loss_falls_on_a_repeated_batch(engine: Engine) -> None:
    run = engine.create(BASE, LoraSpec(rank=8, seed=0))
    data = batch(99, size=2, length=12)
    losses = []
    for _ in range(15):
        losses.append(run.forward_backward(data, "cross_entropy", {}).metrics["loss:sum"])
        run.optim_step(AdamParams(learning_rate=2e-2))
    assert run.step == 15
    assert losses[-1] < 0.5 * losses[0]
    run.close()


def test_cross_entropy_is_the_weighted_sum_of_target_logprobs(
    engine: Engine, base_model: torch.nn.Module
) -> None:
    run = engine.create(BASE, LoraSpec(rank=4, seed=1))  # lora_B = 0: equals the base model
    tokens = [11, 22, 33, 44, 55, 66]
    weights = [0.0, 0.0, 1.0, 2.0, 0.5]
    result = run.forward_backward([make_datum(tokens, weights)], "cross_entropy", {})

    with torch.no_grad():
        logits = base_model(input_ids=torch.tensor([tokens[:-1]])).logits[0]
    expected_lp = torch.log_softmax(logits, -1)[torch.arange(5), torch.tensor(tokens[1:])]
    expected = -float((torch.tensor(weights) * expected_lp).sum())

    out = result.outputs[0]
    assert out["logprobs"].dtype == np.float32 and out["logprobs"].shape == (5,)
    np.testing.assert_allclose(out["logprobs"], expected_lp.numpy(), rtol=1e-5, atol=1e-5)
    assert result.metrics["loss:sum"] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(out["elementwise_loss"].sum(), expected, rtol=1e-5)
    run.close()


def test_large_batches_are_split_without_changing_results(engine: Engine) -> None:
    run = engine.create(BASE, LoraSpec(rank=2, seed=4))
    data = batch(5, size=3, length=MICROBATCH_TOKENS // 2 + 1)  # too big for one forward pass
    together = run.forward_backward(data, "cross_entropy", {}, forward_only=True)
    alone = [run.forward_backward([d], "cross_entropy", {}, forward_only=True) for d in data]
    assert together.metrics["loss:sum"] == pytest.approx(sum(a.metrics["loss:sum"] for a in alone))
    for joint, single in zip(together.outputs, alone, strict=True):
        np.testing.assert_allclose(joint["logprobs"], single.outputs[0]["logprobs"], rtol=1e-6)
    run.close()


def test_policy_losses_follow_tinkers_formulas(engine: Engine) -> None:
    run = engine.create(BASE, LoraSpec(rank=4, seed=2))
    plain = make_datum([5, 6, 7, 8, 9])
    logp = run.forward_backward([plain], "cross_entropy", {}, forward_only=True)
    logp = logp.outputs[0]["logprobs"]
    # Sampler logprobs chosen so the ratios p/q are exactly 1.5, 1.5, 0.5, 0.5.
    ratios = np.array([1.5, 1.5, 0.5, 0.5], np.float32)
    advantages = np.array([1.0, -1.0, 1.0, -1.0], np.float32)
    datum = DatumArrays(
        tokens=plain.tokens,
        loss_fn_inputs={
            "target_tokens": plain.loss_fn_inputs["target_tokens"],
            "logprobs": (logp - np.log(ratios)).astype(np.float32),
            "advantages": advantages,
        },
    )
    importance = run.forward_backward([datum], "importance_sampling", {}, forward_only=True)
    np.testing.assert_allclose(
        importance.outputs[0]["elementwise_loss"], -ratios * advantages, rtol=1e-5
    )
    assert importance.metrics["loss:sum"] == pytest.approx(float(-(ratios * advantages).sum()))

    ppo = run.forward_backward([datum], "ppo", {}, forward_only=True)  # clip to [0.8, 1.2]
    np.testing.assert_allclose(
        ppo.outputs[0]["elementwise_loss"], [-1.2, 1.5, -0.5, 0.8], rtol=1e-5
    )
    tight = run.forward_backward(
        [datum], "ppo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}, forward_only=True
    )
    np.testing.assert_allclose(
        tight.outputs[0]["elementwise_loss"], [-1.1, 1.5, -0.5, 0.9], rtol=1e-5
    )
    run.close()


def test_forward_only_leaves_no_gradient(engine: Engine, tmp_path: Path) -> None:
    run = engine.create(BASE, LoraSpec(rank=2, seed=3))
    run.forward_backward(batch(1), "cross_entropy", {}, forward_only=True)
    run.optim_step(AdamParams(learning_rate=1.0))
    run.save_adapter(tmp_path / "after")
    untouched = engine.create(BASE, LoraSpec(rank=2, seed=3))
    untouched.save_adapter(tmp_path / "before")
    assert files(tmp_path / "after") == files(tmp_path / "before")
    run.close()
    untouched.close()


def test_saved_adapter_loads_in_peft_with_the_engines_logits(
    engine: Engine, base_model: torch.nn.Module, tmp_path: Path
) -> None:
    from peft import PeftModel

    run = engine.create(BASE, LoraSpec(rank=4, seed=5))
    train(run, 2)
    run.save_adapter(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE
    assert config["r"] == 4 and config["lora_alpha"] == 32 and config["task_type"] == "CAUSAL_LM"
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    )

    tokens = [101, 202, 303, 404, 505, 606, 707]
    engine_lp = run.forward_backward([make_datum(tokens)], "cross_entropy", {}, forward_only=True)
    peft_model = PeftModel.from_pretrained(base_model, str(tmp_path)).eval()
    with torch.no_grad():
        logits = peft_model(input_ids=torch.tensor([tokens[:-1]])).logits[0]
    peft_lp = torch.log_softmax(logits, -1)[torch.arange(6), torch.tensor(tokens[1:])]
    np.testing.assert_allclose(engine_lp.outputs[0]["logprobs"], peft_lp.numpy(), atol=1e-5)
    run.close()


@pytest.mark.parametrize("name", ["Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3.1"])
def test_moe_stand_ins_train_experts_and_load_in_peft(
    engine: Engine, name: str, tmp_path: Path
) -> None:
    """MoE stand-ins (gpt-oss and Kimi K2 share these code paths) train fused experts."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    datum = make_datum([5, 6, 7, 8, 9, 10])
    for attempt in ("first", "second"):  # a second run on the shared base: same bytes
        run = engine.create(name, LoraSpec(rank=2, seed=0))
        run.forward_backward([datum], "cross_entropy", {})
        run.optim_step(AdamParams(learning_rate=1e-2))
        run.save_adapter(tmp_path / attempt)
        if attempt == "first":
            run.close()
    assert files(tmp_path / "first") == files(tmp_path / "second")
    config = json.loads((tmp_path / "first" / "adapter_config.json").read_text())
    assert config["target_parameters"] == ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]

    engine_lp = run.forward_backward([datum], "cross_entropy", {}, forward_only=True)
    base = AutoModelForCausalLM.from_pretrained(engine.models.standin_dir(name))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "second")).eval()
    with torch.no_grad():
        logits = peft_model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits[0]
    peft_lp = torch.log_softmax(logits, -1)[torch.arange(5), torch.tensor([6, 7, 8, 9, 10])]
    np.testing.assert_allclose(engine_lp.outputs[0]["logprobs"], peft_lp.numpy(), atol=1e-5)
    run.close()


def test_lora_groups_select_target_modules(engine: Engine, tmp_path: Path) -> None:
    run = engine.create(BASE, LoraSpec(rank=2, seed=0, train_mlp=False, train_unembed=False))
    run.save_adapter(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    run.close()
    with pytest.raises(EngineError, match="trains no layer"):
        engine.create(
            BASE, LoraSpec(rank=2, seed=0, train_attn=False, train_mlp=False, train_unembed=False)
        )


def test_user_errors_name_the_bad_value(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"'Qwen/Qwen3-9B'.*Did you mean"):
        engine.base_model_info("Qwen/Qwen3-9B")
    with pytest.raises(EngineError, match="is not a Hugging Face model directory"):
        engine.base_model_info("/nonexistent/model")
    run = engine.create(BASE, LoraSpec(rank=2, seed=0))
    with pytest.raises(EngineError, match=r"'mse'.*cross_entropy.*ppo"):
        run.forward_backward(batch(0), "mse", {})
    with pytest.raises(EngineError, match="token id 999999"):
        run.forward_backward([make_datum([1, 2, 999_999])], "cross_entropy", {})
    with pytest.raises(EngineError, match="advantages"):
        run.forward_backward(batch(0), "ppo", {})
    with pytest.raises(EngineError, match="clip_ratio"):
        run.forward_backward(batch(0), "cross_entropy", {"clip_ratio": 0.2})
    with pytest.raises(EngineError, match="non-empty"):
        run.forward_backward([make_datum([1])], "cross_entropy", {})
    with pytest.raises(EngineError, match="context length 32768"):
        run.forward_backward([make_datum([1] * 32_770)], "cross_entropy", {})
    with pytest.raises(EngineError, match="not an engine state dir"):
        engine.load(tmp_path, with_optimizer=True)
    run.save_state(tmp_path)
    weights = tmp_path / "state.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(EngineError, match="Cannot read the weights"):
        engine.load(tmp_path, with_optimizer=True)
    run.close()


def test_local_path_model_trains_with_real_weights(engine: Engine, tmp_path: Path) -> None:
    write_tiny_qwen3(
        tmp_path / "model",
        vocab_size=300,
        max_position_embeddings=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    name = str(tmp_path / "model")

    info = engine.base_model_info(name)
    assert (info.kind, info.max_context_length, info.tokenizer_dir) == (
        "local-path",
        256,
        Path(name),
    )
    run = engine.create(name, LoraSpec(rank=2, seed=0))
    data = [make_datum([1, 2, 3, 4, 5, 6, 7, 8])]
    losses = []
    for _ in range(5):
        losses.append(run.forward_backward(data, "cross_entropy", {}).metrics["loss:sum"])
        run.optim_step(AdamParams(learning_rate=5e-2))
    assert losses[-1] < losses[0] and all(math.isfinite(x) for x in losses)
    with pytest.raises(EngineError, match="token id 300"):
        run.forward_backward([make_datum([1, 300])], "cross_entropy", {})
    run.save_adapter(tmp_path / "adapter")
    sampled = engine.sampler(name, tmp_path / "adapter").sample([1, 2], 1, max_tokens=3)
    assert len(sampled.sequences[0].tokens) == 3
    with pytest.raises(EngineError, match="do not fit"):  # an adapter for another base
        engine.sampler(BASE, tmp_path / "adapter")
    run.close()


def test_lineup_includes_the_qwen3_family() -> None:
    for size in ("0.6B", "1.7B", "4B", "8B", "14B", "32B", "30B-A3B"):
        assert f"Qwen/Qwen3-{size}" in STANDINS
