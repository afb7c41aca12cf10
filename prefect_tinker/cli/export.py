"""CLI commands for runs, checkpoints and export: list, download, inspect, push, publish, TTL.

Credentials come from TINKER_API_KEY / TINKER_BASE_URL, or from a saved TinkerCredentials
block (`--block NAME`). Every failure prints one line (`error: ...`) and exits with status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from prefect_tinker.cli.output import OutputFormat, print_json
from prefect_tinker.errors import PrefectTinkerError

runs_app = typer.Typer(help="Training runs on the Tinker service.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="Checkpoints of a training run.", no_args_is_help=True)


FORMAT = typer.Option(OutputFormat.table, "--format", help="Output as a table or as JSON.")
BLOCK = typer.Option(
    None, "--block", help="Name of a saved TinkerCredentials block (default: TINKER_* env vars)."
)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Print any failure as one `error:` line on stderr (never a traceback) and exit 2."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except PrefectTinkerError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        _fail(_describe(exc))


def _fail(message: str) -> None:
    first = " ".join(message.split())  # one line, whatever the source
    typer.secho(f"error: {first}", fg="red", err=True)
    raise typer.Exit(2)


def _describe(exc: Exception) -> str:
    import httpx
    import tinker

    if isinstance(exc, tinker.APIConnectionError | httpx.TransportError):
        url = os.environ.get("TINKER_BASE_URL") or "the Tinker service"
        return f"cannot reach {url} ({type(exc).__name__}); check TINKER_BASE_URL and retry."
    if isinstance(exc, tinker.APIStatusError):
        return f"the Tinker service answered HTTP {exc.status_code}: {str(exc).splitlines()[0]}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'failed'}"


def _credentials(block: str | None) -> Any:
    from prefect_tinker.blocks import TinkerCredentials

    if block:
        try:
            return TinkerCredentials.load(block)
        except ValueError as exc:
            from prefect_tinker.errors import ConfigurationError

            raise ConfigurationError(
                f"no TinkerCredentials block named {block!r}; create it in the Prefect UI or "
                "with TinkerCredentials(...).save(name)."
            ) from exc
    return TinkerCredentials()


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(emoji=False, highlight=False)
    if not console.is_terminal:  # piped output: full values, never cut to 80 columns
        console = Console(emoji=False, highlight=False, width=max(console.width, 240))
    table = Table(title=Text(title))
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(table)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# ---- runs and checkpoints ------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    limit: int = typer.Option(20, min=1, help="At most this many runs."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """List your training runs."""
    with _one_line_errors():
        from prefect_tinker.export.publish import sdk_errors

        rest = _credentials(block).get_rest_client()
        runs: list[Any] = []
        with sdk_errors("the training runs"):
            while len(runs) < limit:
                page = rest.list_training_runs(
                    limit=min(100, limit - len(runs)), offset=len(runs)
                ).result()
                runs += page.training_runs
                if not page.training_runs or len(runs) >= page.cursor.total_count:
                    break
        rows = [
            {
                "run_id": r.training_run_id,
                "base_model": r.base_model,
                "lora_rank": r.lora_rank,
                "last_request_time": r.last_request_time.isoformat(),
                "last_checkpoint": r.last_checkpoint.tinker_path if r.last_checkpoint else None,
            }
            for r in runs
        ]
        if output is OutputFormat.json:
            print_json(rows)
        else:
            _table(
                f"Training runs ({len(rows)})",
                ["run id", "base model", "rank", "last request", "last checkpoint"],
                [list(r.values()) for r in rows],
            )


@checkpoints_app.command("list")
def checkpoints_list(
    run_id: str = typer.Argument(..., help="Training run id (see `runs list`)."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """List the checkpoints of one training run."""
    with _one_line_errors():
        from prefect_tinker.export.publish import sdk_errors

        rest = _credentials(block).get_rest_client()
        with sdk_errors(f"training run {run_id!r}"):
            checkpoints = rest.list_checkpoints(run_id).result().checkpoints
        rows = [
            {
                "tinker_path": c.tinker_path,
                "type": c.checkpoint_type,
                "time": c.time.isoformat(),
                "size_bytes": c.size_bytes,
                "public": c.public,
                "expires_at": c.expires_at.isoformat() if c.expires_at else None,
            }
            for c in sorted(checkpoints, key=lambda c: c.time)
        ]
        if output is OutputFormat.json:
            print_json(rows)
        else:
            _table(
                f"Checkpoints of {run_id}",
                ["tinker path", "type", "time", "size", "public", "expires"],
                [
                    [
                        r["tinker_path"],
                        r["type"],
                        r["time"],
                        _size(r["size_bytes"]),
                        r["public"],
                        r["expires_at"] or "never",
                    ]
                    for r in rows
                ],  # fmt: skip
            )


# ---- download and inspect ------------------------------------------------------------------


def download_cmd(
    tinker_path: str = typer.Argument(..., help="tinker://RUN/weights|external_weights/NAME"),
    dest: Path = typer.Argument(..., help="Directory to download into."),
    concurrency: int = typer.Option(4, min=1, max=32, help="Files transferred at once."),
    overwrite: bool = typer.Option(False, help="Replace a directory holding other files."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """Download a checkpoint (verified, resumable; a no-op when DEST already holds it)."""
    with _one_line_errors():
        from prefect_tinker.export import download
        from prefect_tinker.paths import TinkerPath

        credentials = _credentials(block)
        rest = credentials.get_rest_client()
        needs_service = TinkerPath.parse(tinker_path).segment == "weights"
        service = credentials.get_service_client() if needs_service else None
        with _progress_bar(enabled=output is OutputFormat.table) as progress:
            manifest = download(
                rest,
                tinker_path,
                dest,
                service=service,
                concurrency=concurrency,
                progress=progress,
                overwrite=overwrite,
            )
        if output is OutputFormat.json:
            print_json(manifest.to_dict() | {"bytes_transferred": manifest.bytes_transferred})
            return
        _table(
            f"{manifest.tinker_path} -> {dest}",
            ["file", "size", "sha256"],
            [[f.path, _size(f.size), f.sha256] for f in manifest.files],
        )
        typer.echo(f"transferred {_size(manifest.bytes_transferred)}", err=True)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr, one line per file; yields the download callback."""
    if not enabled:
        yield None
        return
    import threading

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from prefect_tinker.export import ProgressUpdate

    lock = threading.Lock()
    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True, emoji=False),
        transient=False,
    ) as bar:

        def update(u: ProgressUpdate) -> None:
            with lock:
                if u.name not in tasks:
                    tasks[u.name] = bar.add_task(escape(u.name), total=u.total)
            bar.update(tasks[u.name], completed=u.completed, total=u.total)

        yield update


def inspect_cmd(
    directory: Path = typer.Argument(..., help="Adapter directory."),
    base: str | None = typer.Option(
        None, help="Base model dir or name to check shapes against (default: from the config)."
    ),
    tensors: bool = typer.Option(False, help="List every tensor."),
    output: OutputFormat = FORMAT,
) -> None:
    """Describe and validate a PEFT adapter without loading its tensors (exit 1 if invalid)."""
    with _one_line_errors():
        from prefect_tinker.export import validate_adapter

        report = validate_adapter(directory, base=base, raise_on_error=False)
        info = report.info
        if output is OutputFormat.json:
            data = info.to_dict() if info else {"directory": str(directory)}
            if not tensors:
                data.pop("tensors", None)
            print_json(data | {"errors": report.errors, "warnings": report.warnings})
        elif info is not None:
            targets = info.target_modules
            _table(
                f"Adapter {directory}",
                ["field", "value"],
                [
                    ["base model", info.base_model],
                    ["rank", info.rank],
                    ["alpha", info.alpha],
                    ["target modules", targets if isinstance(targets, str) else ", ".join(targets)],
                    ["target parameters", ", ".join(info.target_parameters) or "-"],
                    ["LoRA modules", len(info.modules)],
                    ["tensors", len(info.tensors)],
                    ["parameters", f"{info.parameter_count:,}"],
                    ["dtypes", ", ".join(info.dtypes)],
                    ["weights size", _size(info.weights_size)],
                ],
            )
            if tensors:
                _table(
                    "Tensors",
                    ["name", "dtype", "shape"],
                    [[t.name, t.dtype, list(t.shape)] for t in info.tensors],
                )
        if output is OutputFormat.table:
            for warning in report.warnings:
                typer.secho(f"warning: {warning}", fg="yellow", err=True)
            for error in report.errors:
                typer.secho(f"error: {error}", fg="red", err=True)
            if report.ok:
                typer.secho("valid PEFT LoRA adapter", fg="green", err=True)
        if not report.ok:
            raise typer.Exit(1)


# ---- Hugging Face Hub ----------------------------------------------------------------------


def push_hf_cmd(
    directory: Path = typer.Argument(..., help="Adapter directory (e.g. from `download`)."),
    repo_id: str = typer.Argument(..., help="Hub repo, 'user/name'."),
    revision: str | None = typer.Option(None, help="Tag for this checkpoint (default: its name)."),
    force: bool = typer.Option(False, help="Push even if the repo holds another training run."),
    public: bool = typer.Option(False, help="Create the repo public (default private)."),
    license: str = typer.Option("apache-2.0", "--license", help="License in the model card."),
    tinker_path: str | None = typer.Option(
        None, help="Checkpoint the files came from (default: from DIR's manifest.json)."
    ),
    hf_block: str | None = typer.Option(
        None, help="Saved HuggingFaceCredentials block (default: HF_TOKEN / HF_ENDPOINT)."
    ),
    output: OutputFormat = FORMAT,
) -> None:
    """Push an adapter and a generated model card to the Hugging Face Hub."""
    with _one_line_errors():
        from prefect_tinker.blocks import HuggingFaceCredentials
        from prefect_tinker.errors import ConfigurationError
        from prefect_tinker.export import Manifest, ModelCard, push_to_hub

        hf = HuggingFaceCredentials.load(hf_block) if hf_block else HuggingFaceCredentials()
        path = tinker_path or getattr(Manifest.read(directory), "tinker_path", None)
        if path is None:
            raise ConfigurationError(
                f"{str(directory)!r} has no manifest.json; pass --tinker-path tinker://..."
            )
        result = push_to_hub(
            directory,
            repo_id,
            token=hf.get_token(),
            endpoint=hf.get_endpoint(),
            card=ModelCard(path, license=license),
            revision=revision,
            force=force,
            private=not public,
        )
        data = {
            "repo_id": result.repo_id,
            "revision": result.revision,
            "commit": result.commit_oid,
            "url": result.url,
            "pushed": result.pushed,
        }
        if output is OutputFormat.json:
            print_json(data)
        else:
            verb = "pushed" if result.pushed else "already there (nothing pushed)"
            typer.echo(f"{result.repo_id}@{result.revision}: {verb} {result.url}")


# ---- Tinker-side management ----------------------------------------------------------------


def _report(action: str, path: str, output: OutputFormat, **extra: Any) -> None:
    if output is OutputFormat.json:
        print_json({"tinker_path": path, "action": action, **extra})
    else:
        typer.echo(f"{action}: {path}")


def publish_cmd(
    tinker_path: str = typer.Argument(..., help="Checkpoint to make public."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """Make a checkpoint public on Tinker."""
    with _one_line_errors():
        from prefect_tinker.export import publish

        _report("published", publish(_credentials(block).get_rest_client(), tinker_path), output)


def unpublish_cmd(
    tinker_path: str = typer.Argument(..., help="Checkpoint to make private."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """Make a published checkpoint private again."""
    with _one_line_errors():
        from prefect_tinker.export import unpublish

        path = unpublish(_credentials(block).get_rest_client(), tinker_path)
        _report("unpublished", path, output)


def ttl_cmd(
    tinker_path: str = typer.Argument(..., help="Checkpoint whose expiry to set."),
    seconds: str = typer.Argument(..., help="Seconds from now (3600 .. 10 years), or 'none'."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """Set when a checkpoint expires ('none' keeps it forever)."""
    with _one_line_errors():
        from prefect_tinker.errors import ConfigurationError
        from prefect_tinker.export import set_ttl

        if seconds.lower() in {"none", "never"}:
            ttl = None
        elif seconds.isdigit():
            ttl = int(seconds)
        else:
            raise ConfigurationError(f"SECONDS {seconds!r} is not a number of seconds or 'none'.")
        path = set_ttl(_credentials(block).get_rest_client(), tinker_path, ttl)
        _report("ttl set", path, output, ttl_seconds=ttl)


def delete_cmd(
    tinker_path: str = typer.Argument(..., help="Checkpoint to delete for good."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    output: OutputFormat = FORMAT,
    block: str | None = BLOCK,
) -> None:
    """Delete a checkpoint on Tinker."""
    with _one_line_errors():
        from prefect_tinker.errors import ConfigurationError
        from prefect_tinker.export import delete
        from prefect_tinker.paths import TinkerPath

        path = str(TinkerPath.parse(tinker_path))
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigurationError(f"deleting {path} cannot be undone; pass --yes to go on.")
            typer.confirm(f"Delete {path}? This cannot be undone.", abort=True)
        _report("deleted", delete(_credentials(block).get_rest_client(), path), output)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(runs_app, name="runs")
    app.add_typer(checkpoints_app, name="checkpoints")
    app.command("download")(download_cmd)
    app.command("inspect")(inspect_cmd)
    app.command("push-hf")(push_hf_cmd)
    app.command("publish")(publish_cmd)
    app.command("unpublish")(unpublish_cmd)
    app.command("ttl")(ttl_cmd)
    app.command("delete")(delete_cmd)
