"""Checkpoint metadata round-trips, and foreign or inconsistent metadata is not ours."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prefect_tinker.checkpoints import CheckpointState


@given(
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 50),
    st.integers(0, 10_000),
    st.text(min_size=1),
)
def test_round_trip(step, extra, epoch, next_batch, run_key):
    total = step + extra
    state = CheckpointState(run_key, step, total, epoch, next_batch, "fp", "ch", step == total)
    metadata = state.to_metadata()
    assert all(isinstance(v, str) for v in metadata.values())
    assert CheckpointState.from_metadata(metadata) == state


def test_foreign_or_broken_metadata_is_ignored():
    good = CheckpointState("k", 2, 4, 0, 2, "fp", "ch", False).to_metadata()
    assert CheckpointState.from_metadata(None) is None
    assert CheckpointState.from_metadata({"run_key": "k"}) is None
    assert CheckpointState.from_metadata({**good, "step": "two"}) is None
    assert CheckpointState.from_metadata({**good, "final": "true"}) is None  # final before end
    assert CheckpointState.from_metadata({**good, "step": "5"}) is None  # past total
