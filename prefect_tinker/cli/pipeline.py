"""CLI commands: `quickstart`, `run` (the SFT pipeline) and `blocks` (register / create).

Example:
    ```
    prefect-tinker quickstart                      # local service, ephemeral Prefect
    prefect-tinker run --model Qwen/Qwen3-8B --dataset chat.jsonl --credentials tinker-prod
    prefect-tinker blocks register
    prefect-tinker blocks create-local tinker-local
    ```
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Annotated, Any

import typer

QUICKSTART_MODEL = "Qwen/Qwen3-0.6B"
# The local stand-ins are tiny random models: they learn visibly only at a rate far above
# what a real 0.6B model would use, so the quickstart sets one instead of deriving it.
QUICKSTART_LR = 2e-2

blocks_app = typer.Typer(help="Register prefect-tinker block types and create block documents.")


def quickstart_dataset(path: Path, conversations: int = 48, seed: int = 0) -> Path:
    """Write a small chat JSONL (reverse a word) that a tiny model learns in a few steps."""
    rng = random.Random(seed)
    words = ["tinker", "prefect", "adapter", "lora", "flow", "task", "block", "model", "token"]
    lines = []
    for _ in range(conversations):
        word = rng.choice(words)
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Reverse the word: {word}"},
                        {"role": "assistant", "content": word[::-1]},
                    ]
                }
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _home() -> Path:
    return Path(os.environ.get("PREFECT_TINKER_HOME", "~/.prefect-tinker")).expanduser()


def _print_result(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"sft_pipeline: {result.run_key}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    rows = [
        ("training run", result.run_id),
        ("steps (this run)", f"{result.final_step} ({result.steps_run})"),
        ("loss first → last", _loss_line(result)),
        ("held-out NLL", "-" if result.eval_nll is None else f"{result.eval_nll:.4f}"),
        ("final checkpoint", result.final_checkpoint),
        ("sampler weights", result.sampler_path or "-"),
        ("external weights", result.external_path or "-"),
        ("adapter directory", result.adapter_dir or "-"),
    ]
    for key, value in rows:
        table.add_row(key, Text(str(value)))  # Text: run ids like "x:train:0" are not emoji
    Console(emoji=False).print(table)


def _loss_line(result: Any) -> str:
    if result.first_loss is None:
        return "- (already finished)"
    return f"{result.first_loss:.4f} → {result.final_loss:.4f}"


def quickstart(
    steps: Annotated[int, typer.Option(help="Optimizer steps to train.")] = 12,
    model: Annotated[str, typer.Option(help="Base model (a local stand-in).")] = QUICKSTART_MODEL,
    dataset: Annotated[
        Path | None, typer.Option(help="Chat JSONL; default: a generated toy dataset.")
    ] = None,
) -> None:
    """Fine-tune on the embedded local service (no credentials) and print where the adapter is."""

    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    home = _home()
    data = dataset or quickstart_dataset(home / "quickstart" / "reverse-words.jsonl")
    typer.echo(f"dataset: {data}")
    # No Prefect server configured: run on a temporary one, patiently (a cold start of the
    # server on a small machine can take longer than Prefect's 20 s default).
    ephemeral = {}
    if not PREFECT_API_URL.value():
        ephemeral = {
            PREFECT_SERVER_EPHEMERAL_ENABLED: True,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 180,
        }
    with temporary_settings(ephemeral):
        result = _quickstart_run(data, model, steps)
    _print_result(result)
    typer.echo(f"adapter: {result.adapter_dir or result.external_path}")


def _quickstart_run(data: Path, model: str, steps: int) -> Any:
    from prefect_tinker.blocks import TinkerLoraConfig
    from prefect_tinker.flows.sft import CheckpointPolicy, EvalOptions, sft_pipeline

    return sft_pipeline(
        base_model=model,
        dataset=str(data),
        lora=TinkerLoraConfig(rank=8, seed=0),
        learning_rate=QUICKSTART_LR,
        batch_size=4,
        max_steps=steps,
        max_length=64,
        num_epochs=max(1, steps),
        checkpoints=CheckpointPolicy(every=max(1, steps // 3), ttl_seconds=3600),
        evaluation=EvalOptions(holdout_fraction=0.2),
    )


def run(
    model: Annotated[str, typer.Option(help="Base model to fine-tune.")],
    dataset: Annotated[Path, typer.Option(help="Chat JSONL file.")],
    credentials: Annotated[
        str | None,
        typer.Option(help="Name of a TinkerCredentials block; default: the local service."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Tinker URL ('local' for the embedded service).")
    ] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 8,
    epochs: Annotated[int, typer.Option(help="Passes over the data.")] = 1,
    max_steps: Annotated[int | None, typer.Option(help="Cap on optimizer steps.")] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 32,
    run_key: Annotated[str | None, typer.Option(help="Run name for resume/caching.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 20,
) -> None:
    """Run the SFT pipeline (train → evaluate → export) once, in this process."""
    from prefect_tinker.blocks import TinkerCredentials, TinkerLoraConfig
    from prefect_tinker.flows.sft import CheckpointPolicy, sft_pipeline

    if credentials is not None:
        creds = TinkerCredentials.load(credentials)
    else:
        creds = TinkerCredentials(base_url=base_url or "local")
    result = sft_pipeline(
        base_model=model,
        dataset=str(dataset),
        credentials=creds,
        lora=TinkerLoraConfig(rank=rank, seed=0),
        learning_rate=learning_rate,
        batch_size=batch_size,
        num_epochs=epochs,
        max_steps=max_steps,
        run_key=run_key,
        checkpoints=CheckpointPolicy(every=checkpoint_every),
    )
    _print_result(result)


@blocks_app.command("register")
def register_blocks() -> None:
    """Register the block types with the current Prefect API (like `prefect block register`)."""
    from prefect_tinker.blocks import BLOCK_TYPES

    for block in BLOCK_TYPES:
        block.register_type_and_schema()
        typer.echo(f"registered {block.get_block_type_slug()}")


@blocks_app.command("create-local")
def create_local(
    name: Annotated[str, typer.Argument(help="Block document name.")] = "local",
) -> None:
    """Save a TinkerCredentials block for the embedded local service, and a LoRA config."""
    from prefect_tinker.blocks import TinkerCredentials, TinkerLoraConfig

    TinkerCredentials(base_url="local").save(name, overwrite=True)
    TinkerLoraConfig(rank=8, seed=0).save(name, overwrite=True)
    typer.echo(f"saved tinker-credentials/{name} and tinker-lora-config/{name}")


@blocks_app.command("create-from-env")
def create_from_env(
    name: Annotated[str, typer.Argument(help="Block document name.")] = "default",
) -> None:
    """Save blocks from TINKER_API_KEY / TINKER_BASE_URL / TINKER_PROJECT_ID / HF_TOKEN."""
    from prefect_tinker.blocks import HuggingFaceCredentials, TinkerCredentials
    from prefect_tinker.errors import MissingCredentialsError

    key = os.environ.get("TINKER_API_KEY")
    base_url = os.environ.get("TINKER_BASE_URL")
    if not key and (base_url or "").lower() != "local":
        raise MissingCredentialsError(
            "TINKER_API_KEY is not set; export it (or TINKER_BASE_URL=local) and run again."
        )
    TinkerCredentials(
        api_key=key or None, base_url=base_url, project_id=os.environ.get("TINKER_PROJECT_ID")
    ).save(name, overwrite=True)
    typer.echo(f"saved tinker-credentials/{name}")
    if os.environ.get("HF_TOKEN"):
        HuggingFaceCredentials(
            token=os.environ["HF_TOKEN"], endpoint=os.environ.get("HF_ENDPOINT")
        ).save(name, overwrite=True)
        typer.echo(f"saved hugging-face-credentials/{name}")


def register(app: typer.Typer) -> None:
    """Add `quickstart`, `run` and the `blocks` group to the root app."""
    app.command("quickstart")(quickstart)
    app.command("run")(run)
    app.add_typer(blocks_app, name="blocks")
