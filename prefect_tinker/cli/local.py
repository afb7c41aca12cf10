"""CLI commands: `prefect-tinker local serve` runs the local Tinker service."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

local_app = typer.Typer(help="The embedded local Tinker-compatible service.", no_args_is_help=True)


@local_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep 127.0.0.1 unless needed."),
    port: int = typer.Option(0, help="Port to listen on; 0 picks a free one."),
    data_dir: Path | None = typer.Option(
        None, help="Where runs and checkpoints live (default $PREFECT_TINKER_HOME/local)."
    ),
    api_key: list[str] = typer.Option(
        [],
        "--api-key",
        help="An accepted key ('tml-...'); repeatable. Default: the data dir's key.",
    ),
) -> None:
    """Serve the Tinker wire protocol until SIGTERM or Ctrl-C; prints the base URL when ready."""
    from prefect_tinker.local.server import LocalTinker

    svc = LocalTinker(data_dir, api_keys=api_key or None, host=host, port=port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    svc.start()
    svc.write_server_file()
    try:
        typer.echo(f"Local Tinker service ready at {svc.base_url}", err=True)
        if not api_key:
            typer.echo(f"API key: stored in {svc.data_dir / 'api_key'}", err=True)
        typer.echo(svc.base_url)
        stop.wait()
    finally:
        svc.remove_server_file()
        svc.stop()
        typer.echo("Local Tinker service stopped.", err=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(local_app, name="local")
