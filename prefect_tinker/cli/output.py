"""Output pieces shared by the CLI groups: the `--format` choice and JSON printing."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import typer


class OutputFormat(StrEnum):
    """How a command prints its result: a human table or machine-readable JSON."""

    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout (anything not JSON-native via `str`)."""
    typer.echo(json.dumps(data, indent=2, default=str))
