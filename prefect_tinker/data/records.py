"""Reading chat JSONL: one conversation per line, streamed, each bad line named by number.

A line is ``{"messages": [{"role": ..., "content": ...}, ...]}`` or
``{"prompt": "...", "completion": "..."}`` (read as one user and one assistant message).
Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_tinker.errors import DatasetError

Messages = list[dict[str, Any]]


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) of each line, read lazily."""
    try:
        with path.open("rb") as f:
            yield from enumerate(f, start=1)
    except OSError as exc:
        raise DatasetError(f"cannot read dataset '{path}': {exc.strerror or exc}") from exc


def _check_message(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ValueError(f"messages[{index}] is {type(message).__name__}, expected an object")
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise ValueError(f"messages[{index}] has no 'role' string")
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) for p in content):
            raise ValueError(f"messages[{index}].content must be a string or a list of parts")
    elif not isinstance(content, str):
        raise ValueError(f"messages[{index}].content must be a string or a list of parts")
    return message


def messages_of(record: Any) -> Messages:
    """The conversation a decoded JSON record holds; ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        return [_check_message(m, i) for i, m in enumerate(messages)]
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    raise ValueError("expected a 'messages' list or 'prompt' and 'completion' strings")


def parse_line(raw: bytes | str, line: int, path: Path | str) -> Messages | None:
    """The conversation on one JSONL line, None for a blank line.

    Raises DatasetError naming `path` and `line` for anything else that is not a conversation.

    Example:
        >>> parse_line(b'{"prompt": "2+2?", "completion": "4"}', 1, "d.jsonl")[1]
        {'role': 'assistant', 'content': '4'}
    """
    if not raw.strip():
        return None
    try:
        return messages_of(json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw))
    except (ValueError, RecursionError) as exc:
        detail = str(exc)
        if isinstance(exc, json.JSONDecodeError):
            detail = f"invalid JSON ({exc.msg}, column {exc.colno})"
        elif isinstance(exc, RecursionError):
            detail = "JSON nested too deeply"
        elif isinstance(exc, UnicodeDecodeError):
            detail = "not valid UTF-8"
        raise DatasetError(f"{path}:{line}: {detail}") from None
