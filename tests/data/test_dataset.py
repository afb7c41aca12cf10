"""Chat datasets → Datums: shifting, weights, shuffling, holdout, fingerprint, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_tinker.data import load_dataset
from prefect_tinker.errors import DatasetError
from prefect_tinker.models import get_renderer

CONVERSATION = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


@pytest.fixture(scope="module")
def renderer():
    return get_renderer(None, "Qwen/Qwen3-8B")


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_datum_is_the_next_token_shift_of_the_rendering(tmp_path: Path, renderer) -> None:
    path = _write(tmp_path / "d.jsonl", [{"messages": CONVERSATION}])
    ds = load_dataset(path, renderer=renderer, max_length=4096)
    [seq] = renderer.render(CONVERSATION)
    [datum] = ds.train
    assert datum.model_input.to_ints() == seq.tokens[:-1]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == seq.tokens[1:]
    assert datum.loss_fn_inputs["weights"].tolist() == seq.weights[1:]
    assert datum.loss_fn_inputs["target_tokens"].dtype == "int64"
    assert datum.loss_fn_inputs["weights"].dtype == "float32"
    assert len(ds) == 1 and ds.records == 1 and ds.trained_tokens == sum(seq.weights[1:])


def test_datums_equal_the_sdks_own_construction(tmp_path: Path, renderer) -> None:
    import tinker

    path = _write(tmp_path / "d.jsonl", [{"messages": CONVERSATION}])
    [datum] = load_dataset(path, renderer=renderer, max_length=4096).train
    [seq] = renderer.render(CONVERSATION)
    reference = tinker.Datum(
        model_input=tinker.ModelInput.from_ints(seq.tokens[:-1]),
        loss_fn_inputs={"target_tokens": seq.tokens[1:], "weights": seq.weights[1:]},
    )
    assert datum.model_input == reference.model_input
    assert datum.model_input.model_dump() == reference.model_input.model_dump()
    for key in ("target_tokens", "weights"):
        assert datum.loss_fn_inputs[key].tolist() == reference.loss_fn_inputs[key].tolist()
        assert datum.loss_fn_inputs[key].shape == reference.loss_fn_inputs[key].shape


def test_truncation_and_untrainable_examples(tmp_path: Path, renderer) -> None:
    long_answer = {"messages": [{"role": "user", "content": "x " * 50}, CONVERSATION[1]]}
    path = _write(tmp_path / "d.jsonl", [{"messages": CONVERSATION[:2]}, long_answer])
    ds = load_dataset(path, renderer=renderer, max_length=20)
    assert all(d.model_input.length <= 19 for d in ds.train)
    assert ds.records == 2 and ds.dropped == 1 and len(ds) == 1
    with pytest.raises(DatasetError, match="no trainable example"):
        load_dataset(_write(tmp_path / "e.jsonl", [long_answer]), renderer=renderer, max_length=20)


def _numbered(tmp_path: Path, n: int) -> Path:
    records = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(n)]
    return _write(tmp_path / "n.jsonl", records)


def test_batches_are_deterministic_per_epoch_and_seed(tmp_path: Path, renderer) -> None:
    ds = load_dataset(_numbered(tmp_path, 10), renderer=renderer, max_length=64)

    def ids(batches):
        return [[tuple(d.model_input.to_ints()) for d in b] for b in batches]

    epoch0 = ids(ds.batches(4, epoch=0, seed=1))
    assert epoch0 == ids(ds.batches(4, epoch=0, seed=1))
    assert epoch0 != ids(ds.batches(4, epoch=1, seed=1))
    assert epoch0 != ids(ds.batches(4, epoch=0, seed=2))
    assert [len(b) for b in epoch0] == [4, 4]  # the remainder of 2 is dropped
    assert len({d for b in epoch0 for d in b}) == 8


def test_holdout_split_is_seeded_and_disjoint(tmp_path: Path, renderer) -> None:
    path = _numbered(tmp_path, 20)
    ds = load_dataset(path, renderer=renderer, max_length=64, holdout_fraction=0.25, seed=3)
    again = load_dataset(path, renderer=renderer, max_length=64, holdout_fraction=0.25, seed=3)
    assert (len(ds.train), len(ds.holdout)) == (15, 5)
    held = {tuple(d.model_input.to_ints()) for d in ds.holdout}
    assert held == {tuple(d.model_input.to_ints()) for d in again.holdout}
    assert held.isdisjoint(tuple(d.model_input.to_ints()) for d in ds.train)


def test_fingerprint_covers_content_renderer_max_length_and_train_on(
    tmp_path: Path, renderer
) -> None:
    path = _write(tmp_path / "d.jsonl", [{"messages": CONVERSATION}])
    base = load_dataset(path, renderer=renderer, max_length=64).fingerprint
    assert base == load_dataset(path, renderer=renderer, max_length=64).fingerprint
    assert len(base) == 64
    other_renderer = get_renderer("qwen3_disable_thinking", "Qwen/Qwen3-8B")
    variants = {
        load_dataset(path, renderer=renderer, max_length=65).fingerprint,
        load_dataset(path, renderer=renderer, max_length=64, train_on="all").fingerprint,
        load_dataset(path, renderer=other_renderer, max_length=64).fingerprint,
        load_dataset(
            _write(tmp_path / "e.jsonl", [{"messages": CONVERSATION[:2]}]),
            renderer=renderer,
            max_length=64,
        ).fingerprint,
    }
    assert base not in variants and len(variants) == 4


def test_all_assistant_keeps_every_turn(tmp_path: Path, renderer) -> None:
    path = _write(tmp_path / "d.jsonl", [{"messages": CONVERSATION}])
    ds = load_dataset(path, renderer=renderer, max_length=256, train_on="all_assistant")
    assert len(ds) == 2  # Qwen3 re-renders the history per turn


def test_malformed_line_error_names_file_and_line(tmp_path: Path, renderer) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"messages": CONVERSATION}) + "\n\n{oops\n")
    with pytest.raises(DatasetError, match=r"d\.jsonl:3: invalid JSON"):
        load_dataset(path, renderer=renderer, max_length=64)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "no answer"}]}) + "\n")
    with pytest.raises(DatasetError, match=r"d\.jsonl:1: .*no assistant message"):
        load_dataset(path, renderer=renderer, max_length=64)


def test_empty_and_missing_datasets(tmp_path: Path, renderer) -> None:
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    with pytest.raises(DatasetError, match="no conversations"):
        load_dataset(tmp_path / "empty.jsonl", renderer=renderer, max_length=64)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing.jsonl", renderer=renderer, max_length=64)


def test_worker_processes_give_the_same_dataset(tmp_path: Path, renderer, monkeypatch) -> None:
    from prefect_tinker.data import dataset as dataset_module

    monkeypatch.setattr(dataset_module, "CHUNK_LINES", 7)
    path = _numbered(tmp_path, 30)
    serial = load_dataset(path, renderer=renderer, max_length=64, workers=1)
    parallel = load_dataset(path, renderer=renderer, max_length=64, workers=2)
    assert serial.fingerprint == parallel.fingerprint
    assert [d.model_input.to_ints() for d in serial.train] == [
        d.model_input.to_ints() for d in parallel.train
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.binary(max_size=60) | st.sampled_from([b"{}", b'{"messages": 1}']), max_size=4
    )
)
def test_any_file_loads_or_raises_dataset_error(tmp_path: Path, renderer, lines) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    try:
        ds = load_dataset(path, renderer=renderer, max_length=32)
    except DatasetError:
        return
    assert len(ds) >= 1
