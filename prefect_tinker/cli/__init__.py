"""The `prefect-tinker` command line.

Each command group lives in its own module and registers itself here; errors that
prefect-tinker raises are printed as one clear line, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from prefect_tinker.errors import PrefectTinkerError

app = typer.Typer(
    name="prefect-tinker",
    help="Tinker fine-tuning pipelines on Prefect: models, data, local service, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register_groups() -> None:
    from prefect_tinker.cli import export, local, models, pipeline

    for module in (local, models, export, pipeline):
        module.register(app)


_register_groups()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except PrefectTinkerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
