"""Sampling from the local engine: greedy, seeded, stop tokens and strings, prompt logprobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prefect_tinker.local.engine import AdamParams, DatumArrays, Engine, EngineError, LoraSpec

BASE = "Qwen/Qwen3-0.6B"
PROMPT = [9707, 11, 1879, 0, 151644, 77091, 198]
COMPLETION = [42, 43, 44, 45]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(tmp_path_factory.getbasetemp() / "engine-cache")


@pytest.fixture(scope="module")
def trained_adapter(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = engine.create(BASE, LoraSpec(rank=4, seed=0))
    tokens = np.array(PROMPT + COMPLETION, np.int64)
    weights = np.array([0.0] * (len(PROMPT) - 1) + [1.0] * len(COMPLETION), np.float32)
    datum = DatumArrays(
        tokens=tokens[:-1].astype(np.int32),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
    )
    for _ in range(6):
        run.forward_backward([datum], "cross_entropy", {})
        run.optim_step(AdamParams(learning_rate=5e-3))
    dest = tmp_path_factory.mktemp("adapter")
    run.save_adapter(dest)
    run.close()
    return dest


def test_greedy_is_deterministic_and_matches_training_logprobs(
    engine: Engine, trained_adapter: Path
) -> None:
    sampler = engine.sampler(BASE, trained_adapter)
    first = sampler.sample(PROMPT, 2, max_tokens=6, temperature=0.0)
    again = sampler.sample(PROMPT, 1, max_tokens=6, temperature=0.0)
    seq = first.sequences[0]
    assert seq.tokens == first.sequences[1].tokens == again.sequences[0].tokens
    assert seq.stop_reason == "length" and len(seq.tokens) == len(seq.logprobs) == 6

    # The KV-cached sampler and a full forward pass of the training path agree.
    full = PROMPT + seq.tokens
    checker = engine.create(BASE, LoraSpec(rank=4, seed=0))
    from prefect_tinker.local.lora import load_adapter_tensors, read_peft_dir

    _, tensors = read_peft_dir(trained_adapter)
    load_adapter_tensors(checker.base, checker.adapter_name, tensors, trained_adapter)
    datum = DatumArrays(
        tokens=np.array(full[:-1], np.int32),
        loss_fn_inputs={
            "target_tokens": np.array(full[1:], np.int64),
            "weights": np.ones(len(full) - 1, np.float32),
        },
    )
    logprobs = checker.forward_backward([datum], "cross_entropy", {}, forward_only=True)
    np.testing.assert_allclose(
        logprobs.outputs[0]["logprobs"][-6:], seq.logprobs, rtol=1e-4, atol=1e-4
    )
    checker.close()


def test_adapter_changes_samples_and_base_sampler_ignores_it(
    engine: Engine, trained_adapter: Path
) -> None:
    tuned = engine.sampler(BASE, trained_adapter).sample(PROMPT, 1, max_tokens=4, temperature=0)
    plain = engine.sampler(BASE, None).sample(PROMPT, 1, max_tokens=4, temperature=0)
    assert tuned.sequences[0].tokens[0] == COMPLETION[0]  # learnt from the adapter's data
    assert plain.sequences[0].tokens != tuned.sequences[0].tokens
    assert engine.sampler(BASE, trained_adapter) is engine.sampler(BASE, trained_adapter)


def test_seed_reproduces_samples(engine: Engine) -> None:
    sampler = engine.sampler(BASE, None)
    kwargs = {"max_tokens": 5, "temperature": 1.0, "top_p": 0.9, "top_k": 50}
    a = sampler.sample(PROMPT, 3, seed=11, **kwargs)
    b = sampler.sample(PROMPT, 3, seed=11, **kwargs)
    c = sampler.sample(PROMPT, 3, seed=12, **kwargs)
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
    assert [s.logprobs for s in a.sequences] == [s.logprobs for s in b.sequences]
    assert [s.tokens for s in a.sequences] != [s.tokens for s in c.sequences]
    assert len({tuple(s.tokens) for s in a.sequences}) > 1


def test_stop_tokens_and_strings_end_the_sequence(engine: Engine) -> None:
    sampler = engine.sampler(BASE, None)
    free = sampler.sample(PROMPT, 1, max_tokens=6, temperature=0).sequences[0].tokens
    stopped = sampler.sample(PROMPT, 1, max_tokens=6, temperature=0, stop=[free[2]]).sequences[0]
    assert stopped.tokens == free[: free.index(free[2]) + 1]
    assert stopped.stop_reason == "stop"

    text = engine.models.get(BASE).decode(free[:3])
    by_string = sampler.sample(PROMPT, 1, max_tokens=6, temperature=0, stop=text[-2:])
    assert by_string.sequences[0].stop_reason == "stop"
    assert len(by_string.sequences[0].tokens) <= 3


def test_prompt_logprobs_has_one_value_per_prompt_token(engine: Engine) -> None:
    result = engine.sampler(BASE, None).sample(PROMPT, 1, max_tokens=1, prompt_logprobs=True)
    assert result.prompt_logprobs is not None and len(result.prompt_logprobs) == len(PROMPT)
    assert result.prompt_logprobs[0] is None
    assert all(isinstance(x, float) and x < 0 for x in result.prompt_logprobs[1:])


def test_bad_sampling_requests_are_engine_errors(engine: Engine) -> None:
    sampler = engine.sampler(BASE, None)
    with pytest.raises(EngineError, match="token id 200000"):
        sampler.sample([1, 200_000], 1, max_tokens=2)
    with pytest.raises(EngineError, match="top_p"):
        sampler.sample(PROMPT, 1, max_tokens=2, top_p=0.0)
    with pytest.raises(EngineError, match="not a PEFT adapter dir"):
        engine.sampler(BASE, Path("/nonexistent"))
