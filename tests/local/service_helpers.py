"""Shared pieces of the local-service tests: a tiny chat dataset, a resuming downloader."""

from __future__ import annotations

import httpx
import numpy as np
import tinker
from tinker import types

BASE = "Qwen/Qwen3-0.6B"
SEED = 0
LR = 2e-2

CHATS = [
    ("What is the capital of France?", "Paris."),
    ("What is two plus three?", "Five."),
    ("Name a primary colour.", "Red."),
    ("Which planet is called the red planet?", "Mars."),
    ("What do bees make?", "Honey."),
    ("How many legs does a spider have?", "Eight."),
    ("What is frozen water called?", "Ice."),
    ("Which animal says moo?", "A cow."),
]


def chat_datums(tokenizer) -> list[types.Datum]:
    """Next-token datums of short chats; only the assistant reply is weighted."""
    datums = []
    for question, answer in CHATS:
        prompt = tokenizer.encode(
            f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
            add_special_tokens=False,
        )
        reply = tokenizer.encode(f"{answer}<|im_end|>", add_special_tokens=False)
        tokens = prompt + reply
        weights = np.array([0.0] * (len(prompt) - 1) + [1.0] * len(reply), dtype=np.float32)
        datums.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": np.array(tokens[1:], dtype=np.int64),
                    "weights": weights,
                },
            )
        )
    return datums


def batch(datums: list[types.Datum], step: int, size: int = 4) -> list[types.Datum]:
    start = (step * size) % len(datums)
    return datums[start : start + size]


def adam() -> types.AdamParams:
    return types.AdamParams(learning_rate=LR)


def train_steps(tc: tinker.TrainingClient, datums, first: int, last: int) -> list[float]:
    """Steps first..last-1, pipelined (each step's result is read after the next is sent)."""
    losses: list[float] = []
    pending = None
    for step in range(first, last):
        fb = tc.forward_backward(batch(datums, step), "cross_entropy")
        opt = tc.optim_step(adam())
        if pending is not None:
            losses.append(pending[0].result().metrics["loss:sum"])
            pending[1].result()
        pending = (fb, opt)
    if pending is not None:
        losses.append(pending[0].result().metrics["loss:sum"])
        pending[1].result()
    return losses


def fetch(url: str) -> bytes:
    """GET a signed URL, resuming with HTTP Range after a cut connection."""
    data = b""
    for _ in range(10):
        headers = {"Range": f"bytes={len(data)}-"} if data else {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=30, trust_env=False) as r:
                assert r.status_code == (206 if data else 200), r.status_code
                for chunk in r.iter_bytes():
                    data += chunk
            return data
        except httpx.RemoteProtocolError:
            continue
    raise AssertionError(f"download of {url} did not complete")


def download_external(rest: tinker.RestClient, tinker_path: str) -> dict[str, bytes]:
    urls = rest.get_external_weights_urls(tinker_path).result().urls
    return {name: fetch(url) for name, url in urls.items()}
