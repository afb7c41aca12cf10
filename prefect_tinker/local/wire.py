"""Protobuf ↔ numpy for the local service, using the SDK's own `tinker_public_pb2` schema."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tinker.proto import tinker_public_pb2 as pb

_DTYPES: dict[int, np.dtype] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_INT64: np.dtype("<i8"),
    pb.DTYPE_INT32: np.dtype("<i4"),
}


class WireError(ValueError):
    """A request body that does not decode; the message names the bad part."""


@dataclass
class DecodedDatum:
    tokens: np.ndarray  # int32, 1-D
    loss_fn_inputs: dict[str, np.ndarray]


@dataclass
class DecodedForwardBackward:
    model_id: str
    seq_id: int
    loss_fn: str
    loss_fn_config: dict[str, float | str]
    forward_only: bool
    data: list[DecodedDatum]


def _tensor(msg: pb.Tensor, where: str) -> np.ndarray:
    dtype = _DTYPES.get(msg.dtype)
    if dtype is None:
        raise WireError(f"{where}: unsupported tensor dtype {msg.dtype}; use float32 or int64.")
    shape = [int(s) for s in msg.shape]
    try:
        if msg.HasField("sparse_csr"):
            if len(shape) != 2:
                raise WireError(f"{where}: sparse tensors must be 2-D, got shape {shape}.")
            values = np.frombuffer(msg.sparse_csr.values, dtype)
            crow = np.frombuffer(msg.sparse_csr.crow_indices, "<i8")
            col = np.frombuffer(msg.sparse_csr.col_indices, "<i8")
            dense = np.zeros(shape, dtype)
            if len(crow) != shape[0] + 1 or len(col) != len(values):
                raise WireError(f"{where}: sparse tensor indices do not match its shape {shape}.")
            for row in range(shape[0]):
                lo, hi = int(crow[row]), int(crow[row + 1])
                dense[row, col[lo:hi]] = values[lo:hi]
            return dense
        arr = np.frombuffer(msg.dense, dtype)
        if shape:
            arr = arr.reshape(shape)
        return arr.copy()
    except (ValueError, IndexError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"{where}: tensor bytes do not match shape {shape}: {exc}") from exc


def decode_forward_backward(body: bytes) -> DecodedForwardBackward:
    """Parse a `ForwardBackwardRequest` body."""
    msg = pb.ForwardBackwardRequest()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise WireError(
            f"forward_backward body is not a ForwardBackwardRequest protobuf: {exc}"
        ) from exc
    if not msg.model_id:
        raise WireError("forward_backward request has no model_id.")
    config: dict[str, float | str] = {k: float(v) for k, v in msg.loss_fn_config.items()}
    for key, value in msg.loss_fn_config_v2.items():
        kind = value.WhichOneof("value")
        if kind == "number":
            config[key] = float(value.number)
        elif kind == "text":
            config[key] = value.text
    data: list[DecodedDatum] = []
    for i, datum in enumerate(msg.data):
        parts: list[np.ndarray] = []
        for j, chunk in enumerate(datum.model_input):
            kind = chunk.WhichOneof("chunk")
            if kind != "encoded_text":
                raise WireError(
                    f"datum {i} chunk {j} is a {kind!r} chunk; the local service only supports "
                    "encoded_text chunks."
                )
            if len(chunk.encoded_text.tokens) % 4:
                raise WireError(f"datum {i} chunk {j}: token bytes are not int32 little-endian.")
            parts.append(np.frombuffer(chunk.encoded_text.tokens, "<i4"))
        tokens = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        inputs = {
            name: _tensor(t, f"datum {i} loss_fn_inputs[{name!r}]")
            for name, t in datum.loss_fn_inputs.items()
        }
        data.append(DecodedDatum(tokens=tokens, loss_fn_inputs=inputs))
    return DecodedForwardBackward(
        model_id=msg.model_id,
        seq_id=int(msg.seq_id),
        loss_fn=msg.loss_fn,
        loss_fn_config=config,
        forward_only=bool(msg.forward_only),
        data=data,
    )


def _proto_dtype(arr: np.ndarray) -> tuple[int, np.dtype]:
    if np.issubdtype(arr.dtype, np.integer):
        return pb.DTYPE_INT64, np.dtype("<i8")
    return pb.DTYPE_FLOAT32, np.dtype("<f4")


def encode_forward_output(
    outputs: Sequence[dict[str, np.ndarray]], metrics: dict[str, float]
) -> bytes:
    """A `ForwardBackwardOutput` with one ArrayRecord holding every datum's outputs."""
    msg = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
    record = msg.loss_fn_outputs.add()
    record.type_tag = "ArrayRecord"
    record.num_datums = len(outputs)
    names = sorted({name for out in outputs for name in out})
    for name in names:
        arrays = [np.asarray(out[name]) for out in outputs]
        code, dtype = _proto_dtype(arrays[0])
        flat = [a.astype(dtype).reshape(-1) for a in arrays]
        trailing = list(arrays[0].shape[1:])
        offsets = np.zeros(len(flat) + 1, "<i8")
        offsets[1:] = np.cumsum([a.nbytes for a in flat])
        bt = record.fields[name]
        bt.data = b"".join(a.tobytes() for a in flat)
        bt.offsets = offsets.tobytes()
        bt.dtype = code
        bt.trailing_shape.extend(trailing)
    for key, value in metrics.items():
        if key.count(":") != 1:
            raise ValueError(f"metric key {key!r} must look like 'name:reduction'.")
        msg.metrics[key] = float(value)
    return msg.SerializeToString()


def encode_sample_response(
    sequences: Sequence[Any], prompt_logprobs: Sequence[float | None] | None
) -> bytes:
    """A `SampleResponse`; `None` prompt logprobs become NaN on the wire."""
    msg = pb.SampleResponse()
    for seq in sequences:
        out = msg.sequences.add()
        out.stop_reason = (
            pb.STOP_REASON_LENGTH if seq.stop_reason == "length" else pb.STOP_REASON_STOP
        )
        out.tokens = np.asarray(seq.tokens, "<i4").tobytes()
        if seq.logprobs is not None:
            out.logprobs = np.asarray(seq.logprobs, "<f4").tobytes()
    if prompt_logprobs is not None:
        values = [math.nan if v is None else float(v) for v in prompt_logprobs]
        msg.prompt_logprobs = np.asarray(values, "<f4").tobytes()
    return msg.SerializeToString()
