"""CLI commands: `models list|show`, `lr MODEL`, `data preview FILE --model M`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from prefect_tinker.cli.output import OutputFormat, print_json
from prefect_tinker.errors import PrefectTinkerError

models_app = typer.Typer(
    help="Tinker's model lineup: facts, sizes, renderers.", no_args_is_help=True
)
data_app = typer.Typer(help="Chat datasets: check how they render.", no_args_is_help=True)


FORMAT_OPTION = typer.Option(OutputFormat.table, "--format", "-f", help="table or json.")


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print prefect-tinker's errors as one line and exit 2, never a traceback."""
    try:
        yield
    except PrefectTinkerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False, width=160)


@models_app.command("list")
def list_command(
    live: bool = typer.Option(
        False, help="Merge what the service at TINKER_BASE_URL reports (trainable, context)."
    ),
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """List the model lineup (optionally merged with a live service's capabilities)."""
    from prefect_tinker.models import list_models, live_models

    with _user_errors():
        if live:
            import tinker

            rows = [m.to_dict() for m in live_models(tinker.RestClient())]
        else:
            rows = [{"name": s.name, "spec": s.to_dict(), "served": None} for s in list_models()]
    if output is OutputFormat.json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="Tinker models")
    for column in ("Model", "Type", "Size", "Vision", "Context", "Renderer"):
        table.add_column(column)
    if live:
        table.add_column("Trainable")
        table.add_column("Sampleable")
    for row in rows:
        spec = row["spec"]
        context = row.get("max_context_length") or (spec or {}).get("context_length")
        cells = [
            row["name"],
            spec["training_type"] if spec else "?",
            (f"{spec['size']} MoE" if spec["moe"] else spec["size"]) if spec else "?",
            ("yes" if spec["vision"] else "") if spec else "?",
            f"{context:,}" if context else "?",
            spec["renderers"][0] if spec else "?",
        ]
        if live:
            cells += [_yes_no(row["trainable"]), _yes_no(row["sampleable"])]
        table.add_row(*cells)
    _console().print(table)


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _facts(name: str) -> dict[str, Any]:
    from prefect_tinker.errors import ConfigurationError
    from prefect_tinker.models import get_lr, get_model, lora_param_count

    spec = get_model(name)
    facts = spec.to_dict()
    try:
        facts["lora_params_rank32"] = lora_param_count(spec.architecture, 32)
    except ConfigurationError:
        facts["lora_params_rank32"] = None
    try:
        facts["recommended_lr"] = get_lr(spec.name)
    except ConfigurationError:
        facts["recommended_lr"] = None
    return facts


@models_app.command("show")
def show_command(name: str, output: OutputFormat = FORMAT_OPTION) -> None:
    """Everything recorded about one model: facts, architecture, LoRA size, learning rate."""
    with _user_errors():
        facts = _facts(name)
    if output is OutputFormat.json:
        print_json(facts)
        return
    from rich.table import Table

    table = Table(title=facts["name"], show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value")
    architecture = facts.pop("architecture")
    for key, value in facts.items():
        if key == "lora_params_rank32" and value is not None:
            value = f"{value:,}"
        elif key == "recommended_lr":
            value = "not published (pass a learning rate)" if value is None else f"{value:.3g}"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, "" if value is None else str(value))
    for key, value in architecture.items():
        if value not in (None, 0) and key != "measured_lora":
            table.add_row(f"architecture.{key}", str(value))
    _console().print(table)


def lr_command(
    model: str,
    full: bool = typer.Option(False, "--full", help="Full fine-tuning LR instead of LoRA's."),
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """The recommended learning rate of MODEL (LoRA unless --full)."""
    from prefect_tinker.models import get_lr

    with _user_errors():
        lr = get_lr(model, lora=not full)
    if output is OutputFormat.json:
        print_json({"model": model, "lora": not full, "learning_rate": lr})
    else:
        typer.echo(f"{lr:.6g}")


@data_app.command("preview")
def preview_command(
    file: Path = typer.Argument(..., help="Chat JSONL file."),
    model: str = typer.Option(..., "--model", "-m", help="Base model whose renderer to use."),
    renderer: str | None = typer.Option(None, help="Renderer name (default: the model's)."),
    train_on: str = typer.Option("last_assistant", help="last_assistant, all_assistant or all."),
    max_length: int = typer.Option(32768, help="Truncate sequences to this many tokens."),
    limit: int = typer.Option(3, help="How many conversations to show."),
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Render the first conversations of FILE; trained tokens are shown in green."""
    from prefect_tinker.data.records import iter_lines, parse_line
    from prefect_tinker.models import get_renderer

    shown: list[dict[str, Any]] = []
    with _user_errors():
        chat_renderer = get_renderer(renderer, model)
        for line, raw in iter_lines(file.expanduser()):
            if len(shown) >= limit:
                break
            messages = parse_line(raw, line, file)
            if messages is None:
                continue
            try:
                sequences = chat_renderer.render(
                    messages,
                    train_on=train_on,  # type: ignore[arg-type]
                    max_length=max_length,
                )
            except (ValueError, TypeError) as exc:
                from prefect_tinker.errors import DatasetError

                raise DatasetError(f"{file}:{line}: {exc}") from None
            for seq in sequences:
                shown.append({"line": line, "tokens": seq.tokens, "weights": seq.weights})
    if output is OutputFormat.json:
        print_json({"renderer": chat_renderer.name, "examples": shown})
        return
    _print_preview(chat_renderer, shown)


def _print_preview(chat_renderer: Any, shown: list[dict[str, Any]]) -> None:
    from rich.text import Text

    console = _console()
    decode = chat_renderer.tokenizer.decode
    for example in shown:
        tokens, weights = example["tokens"], example["weights"]
        trained = sum(1 for w in weights if w > 0)
        console.rule(
            f"line {example['line']} · {len(tokens)} tokens · {trained} trained · "
            f"renderer {chat_renderer.name}"
        )
        text = Text()
        start = 0
        # Decode runs of equally-weighted tokens so multi-byte characters stay whole.
        for end in range(1, len(tokens) + 1):
            if end == len(tokens) or (weights[end] > 0) != (weights[start] > 0):
                style = "bold green" if weights[start] > 0 else "dim"
                text.append(decode(tokens[start:end]), style=style)
                start = end
        console.print(text)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(models_app, name="models")
    app.add_typer(data_app, name="data")
    app.command("lr")(lr_command)
