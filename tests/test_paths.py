"""Tinker paths: what parses, what is refused and how the refusal reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_tinker.errors import InvalidTinkerPath
from prefect_tinker.paths import TinkerPath


def test_parses_the_three_segments():
    p = TinkerPath.parse("tinker://6f57-aa:train:0/sampler_weights/sampler-2")
    assert (p.run_id, p.segment, p.name) == ("6f57-aa:train:0", "sampler_weights", "sampler-2")
    assert p.checkpoint_type == "sampler"
    assert p.checkpoint_id == "sampler_weights/sampler-2"
    assert str(p) == "tinker://6f57-aa:train:0/sampler_weights/sampler-2"


def test_wrong_part_count_names_the_value_and_the_shape():
    with pytest.raises(InvalidTinkerPath) as info:
        TinkerPath.parse("tinker://abc/weights")
    message = str(info.value)
    assert "'tinker://abc/weights' has 2 parts" in message
    assert "tinker://<run_id>/<weights|sampler_weights|external_weights>/<name>" in message


@pytest.mark.parametrize(
    "value",
    [
        "abc/weights/x",
        "tinker:///weights/x",
        "tinker://run/checkpoints/x",
        "tinker://run/weights/..",
        "tinker://run/weights/",
        "tinker://run/weights/a\\b",
    ],
)
def test_refuses_malformed_paths(value):
    with pytest.raises(InvalidTinkerPath):
        TinkerPath.parse(value)


@given(st.text(max_size=80))
def test_any_string_parses_or_raises_the_typed_error(value):
    try:
        parsed = TinkerPath.parse(value)
    except InvalidTinkerPath as exc:
        assert repr(value)[:20] in str(exc) or "checkpoint name" in str(exc)
    else:
        assert str(parsed) == value


@given(
    run=st.from_regex(r"[0-9a-f\-]{1,36}:train:[0-9]{1,3}", fullmatch=True),
    segment=st.sampled_from(["weights", "sampler_weights", "external_weights"]),
    name=st.from_regex(r"[A-Za-z0-9_.\-]{1,40}", fullmatch=True).filter(
        lambda n: n not in {".", ".."}
    ),
)
def test_build_round_trips(run, segment, name):
    assert TinkerPath.parse(str(TinkerPath.build(run, segment, name))) == TinkerPath(
        run, segment, name
    )
