"""Chat datasets → `tinker.Datum`s: JSONL reading, rendering, batching.

Example:
    >>> from prefect_tinker.data import load_dataset
    >>> from prefect_tinker.models import get_renderer
    >>> renderer = get_renderer(None, "Qwen/Qwen3-8B")
    >>> ds = load_dataset("chat.jsonl", renderer=renderer, max_length=2048)
"""

from __future__ import annotations

from prefect_tinker.data.dataset import ChatDataset, load_dataset
from prefect_tinker.data.records import messages_of, parse_line

__all__ = ["ChatDataset", "load_dataset", "messages_of", "parse_line"]
