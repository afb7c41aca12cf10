"""Tinker checkpoint paths: `tinker://<training_run_id>/<segment>/<name>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect_tinker.errors import InvalidTinkerPath

Segment = Literal["weights", "sampler_weights", "external_weights"]
CheckpointType = Literal["training", "sampler", "external"]

SCHEME = "tinker://"
SEGMENT_TO_TYPE: dict[str, CheckpointType] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}
TYPE_TO_SEGMENT: dict[str, Segment] = {v: k for k, v in SEGMENT_TO_TYPE.items()}  # type: ignore[misc]
MIN_TTL_SECONDS = 3600  # the range of a checkpoint's TTL Tinker accepts: 1 hour ..
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600  # .. 10 years
_SHAPE = "'tinker://<run_id>/<weights|sampler_weights|external_weights>/<name>'"


@dataclass(frozen=True)
class TinkerPath:
    """A parsed checkpoint path.

    Example:
        >>> p = TinkerPath.parse("tinker://abc:train:0/weights/step-2")
        >>> p.run_id, p.checkpoint_id, p.checkpoint_type
        ('abc:train:0', 'weights/step-2', 'training')
    """

    run_id: str
    segment: Segment
    name: str

    @classmethod
    def parse(cls, value: str) -> TinkerPath:
        if not isinstance(value, str) or not value.startswith(SCHEME):
            raise InvalidTinkerPath(
                f"{value!r} does not start with 'tinker://'; expected {_SHAPE}."
            )
        parts = value[len(SCHEME) :].split("/")
        if len(parts) != 3:
            raise InvalidTinkerPath(
                f"{value!r} has {len(parts)} parts after 'tinker://'; expected {_SHAPE}."
            )
        run_id, segment, name = parts
        if not run_id:
            raise InvalidTinkerPath(f"{value!r} has an empty run id; expected {_SHAPE}.")
        if segment not in SEGMENT_TO_TYPE:
            raise InvalidTinkerPath(
                f"{value!r} has segment {segment!r}; expected one of "
                f"weights, sampler_weights, external_weights."
            )
        check_checkpoint_name(name, context=value)
        return cls(run_id=run_id, segment=segment, name=name)  # type: ignore[arg-type]

    @classmethod
    def build(cls, run_id: str, segment: Segment, name: str) -> TinkerPath:
        return cls.parse(f"{SCHEME}{run_id}/{segment}/{name}")

    @property
    def checkpoint_id(self) -> str:
        return f"{self.segment}/{self.name}"

    @property
    def checkpoint_type(self) -> CheckpointType:
        return SEGMENT_TO_TYPE[self.segment]

    def __str__(self) -> str:
        return f"{SCHEME}{self.run_id}/{self.segment}/{self.name}"


def check_checkpoint_name(name: str, context: str | None = None) -> str:
    """Refuse checkpoint names that cannot be part of a tinker path or a file name."""
    where = f" in {context!r}" if context else ""
    if not name:
        raise InvalidTinkerPath(f"empty checkpoint name{where}; use e.g. 'step-10'.")
    bad = [c for c in name if c in "/\\\0" or ord(c) < 32]
    if bad or name in {".", ".."} or len(name) > 200:
        raise InvalidTinkerPath(
            f"checkpoint name {name!r}{where} is not allowed; use letters, digits, '-', '_' "
            "and '.', at most 200 characters, not '.' or '..'."
        )
    return name
