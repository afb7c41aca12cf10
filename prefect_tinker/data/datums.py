"""Rendered conversations → `tinker.Datum`s, built in bulk.

Rendering goes through the renderer one conversation at a time (that is where the time goes);
everything around it works on whole chunks: token ids and weights of a chunk are packed into two
numpy arrays, shifted by slicing, and each Datum is assembled from views of them without
re-validating what is already known to be well-formed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prefect_tinker.data.records import parse_line
from prefect_tinker.errors import DatasetError

if TYPE_CHECKING:
    import tinker

    from prefect_tinker.models.renderers import Renderer, TrainOn


@dataclass
class RenderedChunk:
    """The sequences of a run of consecutive records, packed.

    `lengths[i]` tokens of sequence i start at `starts[i]` in `tokens`/`weights`; `records[i]`
    is the index (within the chunk) of the record it came from.
    """

    tokens: np.ndarray  # int64
    weights: np.ndarray  # float32
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64
    records: np.ndarray  # int64
    record_count: int
    dropped: int  # sequences with < 2 tokens or no trained token (after truncation)


def render_lines(
    lines: Sequence[tuple[int, bytes]],
    renderer: Renderer,
    *,
    train_on: TrainOn,
    max_length: int,
    path: Path | str,
) -> RenderedChunk:
    """Parse and render `lines` ((line number, raw bytes)); DatasetError names the bad line."""
    tokens: list[int] = []
    weights: list[float] = []
    lengths: list[int] = []
    records: list[int] = []
    dropped = 0
    record = 0
    for line, raw in lines:
        messages = parse_line(raw, line, path)
        if messages is None:
            continue
        try:
            sequences = renderer.render(messages, train_on=train_on, max_length=max_length)
        except (DatasetError, ValueError, TypeError) as exc:
            raise DatasetError(f"{path}:{line}: {exc}") from None
        for seq in sequences:
            if len(seq.tokens) < 2 or not any(seq.weights[1:]):
                dropped += 1
                continue
            tokens += seq.tokens
            weights += seq.weights
            lengths.append(len(seq.tokens))
            records.append(record)
        record += 1
    length_array = np.array(lengths, dtype=np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(length_array[:-1], out=starts[1:])
    return RenderedChunk(
        np.array(tokens, dtype=np.int64),
        np.array(weights, dtype=np.float32),
        starts,
        length_array,
        np.array(records, dtype=np.int64),
        record,
        dropped,
    )


def datums_of(chunk: RenderedChunk) -> list[tinker.Datum]:
    """One Datum per packed sequence: input = tokens[:-1], targets/weights = [1:]."""
    from tinker.types import Datum, EncodedTextChunk, ModelInput, TensorData

    out: list[Datum] = []
    tokens, weights = chunk.tokens, chunk.weights
    token_lists = tokens.tolist()
    construct_chunk = EncodedTextChunk.model_construct
    construct_input = ModelInput.model_construct
    for start, length in zip(chunk.starts.tolist(), chunk.lengths.tolist(), strict=True):
        end = start + length
        shape = [length - 1]
        model_input = construct_input(chunks=[construct_chunk(tokens=token_lists[start : end - 1])])
        out.append(
            Datum(
                model_input=model_input,
                loss_fn_inputs={
                    "target_tokens": TensorData(
                        data=tokens[start + 1 : end], dtype="int64", shape=shape
                    ),
                    "weights": TensorData(
                        data=weights[start + 1 : end], dtype="float32", shape=shape
                    ),
                },
            )
        )
    return out
