"""Reading chat JSONL records: what parses, and the error every other line gets."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_tinker.data import parse_line
from prefect_tinker.errors import DatasetError


def test_messages_and_prompt_completion_records() -> None:
    line = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    assert parse_line(line.encode(), 1, "d.jsonl") == [{"role": "user", "content": "hi"}]
    assert parse_line(b'{"prompt": "2+2?", "completion": "4"}', 2, "d.jsonl") == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert parse_line(b"   \n", 3, "d.jsonl") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"messages": [', "invalid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"messages": []}', "non-empty list"),
        (b'{"messages": [{"content": "x"}]}', "'role'"),
        (b'{"messages": [{"role": "user", "content": 3}]}', "content must be"),
        (b'{"prompt": "only a prompt"}', "'prompt' and 'completion'"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_lines_name_file_and_line(raw: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=f"data.jsonl:7: .*{message}"):
        parse_line(raw, 7, "data.jsonl")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["messages", "role", "content", "prompt", "completion", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_line_parses_or_raises_dataset_error(raw: bytes) -> None:
    try:
        messages = parse_line(raw, 1, "f.jsonl")
    except DatasetError as exc:
        assert str(exc).startswith("f.jsonl:1: ")
        return
    if messages is not None:
        assert messages and all(isinstance(m["role"], str) for m in messages)
