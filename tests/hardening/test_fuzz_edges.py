"""Fuzz the parsers and validators at the edge: adapter directories (config + safetensors
header), JSONL datasets, block fields and the CLI. Any input gives a result or the typed error,
never another exception, and the CLI never prints a traceback."""

from __future__ import annotations

import contextlib
import json
import struct
import tempfile
from pathlib import Path

import pytest
from fuzz_support import FUZZ, tried
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from prefect_tinker.errors import (
    AdapterValidationError,
    ConfigurationError,
    DatasetError,
    PrefectTinkerError,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**66), 2**66)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=16)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)

# ---- adapters: adapter_config.json + safetensors header ---------------------------------------

CONFIG_KEYS = (
    "peft_type",
    "r",
    "lora_alpha",
    "target_modules",
    "target_parameters",
    "modules_to_save",
    "base_model_name_or_path",
    "task_type",
    "bias",
)
TENSOR_NAMES = (
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
    "base_model.model.lm_head.lora_A.weight",
    "base_model.model.model.embed_tokens.lora_embedding_A",
)


@st.composite
def adapter_config(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "fields"]))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    keys = draw(st.lists(st.sampled_from(CONFIG_KEYS), unique=True))
    names = st.lists(st.text(max_size=12), max_size=3)
    # Fields of the type PEFT writes with hostile contents, or any JSON value at all.
    typed = {
        "peft_type": json_values,
        "r": st.integers(-2, 600) | json_values,
        "lora_alpha": st.integers(-2, 64) | st.floats(allow_nan=True) | json_values,
        "target_modules": names | st.just("all-linear") | st.text(max_size=12) | json_values,
        "target_parameters": names | json_values,
        "modules_to_save": names | st.none() | json_values,
        "base_model_name_or_path": st.none() | st.text(max_size=300) | json_values,
    }
    return json.dumps({k: draw(typed.get(k, json_values)) for k in keys}).encode()


@st.composite
def safetensors_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "length", "header"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "length":  # an 8-byte length that lies, then random bytes
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + draw(st.binary(max_size=64))
    entries = {}
    for name in draw(st.lists(st.sampled_from(TENSOR_NAMES) | st.text(max_size=12), max_size=4)):
        entries[name] = draw(
            json_values
            | st.fixed_dictionaries(
                {
                    "dtype": st.sampled_from(["F32", "BF16", "I64", "Q4"]) | json_values,
                    "shape": st.lists(st.integers(-2, 2**40), max_size=3) | json_values,
                    "data_offsets": st.lists(st.integers(-4, 2**40), max_size=3) | json_values,
                }
            )
        )
    if draw(st.booleans()):
        entries["__metadata__"] = draw(json_values)
    header = json.dumps(entries).encode()
    data = draw(st.binary(max_size=64))
    return struct.pack("<Q", len(header)) + header + data


def test_fuzz_adapter_dirs_give_a_result_or_adapter_validation_error() -> None:
    from prefect_tinker.export.adapters import inspect_adapter, validate_adapter

    @FUZZ
    @given(config=adapter_config(), weights=safetensors_bytes(), base=st.none() | json_values)
    def run(config: bytes, weights: bytes, base) -> None:
        tried("edges: adapter_config.json + safetensors header")
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "adapter_config.json").write_bytes(config)
            (d / "adapter_model.safetensors").write_bytes(weights)
            with contextlib.suppress(AdapterValidationError):
                inspect_adapter(d)
            report = validate_adapter(
                d, base=base if isinstance(base, dict) else None, raise_on_error=False
            )
            assert isinstance(report.errors, list) and isinstance(report.warnings, list)
            try:
                validate_adapter(d)
            except AdapterValidationError as exc:
                assert str(exc)

    run()


# Inputs on which this fuzzing found crashes in `prefect_tinker/export/adapters.py` (fixed by the
# export owner in 48565d3); kept as regression cases.
FOUND_BUGS = [
    pytest.param(
        b"{}",
        b'{"__metadata__": true}',
        id="non-object __metadata__ -> AttributeError (adapters.py read_safetensors_header)",
    ),
    pytest.param(
        b'{"target_parameters": 5}',
        b"{}",
        id="non-list target_parameters -> TypeError (adapters.py inspect_adapter sorted())",
    ),
    pytest.param(
        b'{"modules_to_save": [1, "a"]}',
        b"{}",
        id="mixed-type modules_to_save -> TypeError (adapters.py inspect_adapter sorted())",
    ),
    pytest.param(
        json.dumps({"base_model_name_or_path": "x" * 300}).encode(),
        b"{}",
        id="300-char base_model_name_or_path -> OSError (validate_adapter treats it as a path)",
    ),
]


@pytest.mark.parametrize(("config", "header"), FOUND_BUGS)
def test_found_adapter_inputs_give_the_typed_error(tmp_path, config: bytes, header: bytes) -> None:
    from prefect_tinker.export.adapters import validate_adapter

    (tmp_path / "adapter_config.json").write_bytes(config)
    (tmp_path / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    report = validate_adapter(tmp_path, raise_on_error=False)
    assert isinstance(report.errors, list)


# ---- JSONL datasets -------------------------------------------------------------------------

message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool"]) | json_values,
        "content": st.text(max_size=30) | json_values,
    }
)
jsonl_line = (
    st.binary(max_size=80)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(message | json_values, max_size=4).map(
        lambda m: json.dumps({"messages": m}).encode()
    )
    | st.tuples(st.text(max_size=20), st.text(max_size=20)).map(
        lambda pc: json.dumps({"prompt": pc[0], "completion": pc[1]}).encode()
    )
    | st.text(max_size=40).map(lambda t: t.encode("utf-16"))
)


def test_fuzz_jsonl_datasets_give_a_dataset_or_dataset_error(tmp_path_factory) -> None:
    from prefect_tinker.data import load_dataset
    from prefect_tinker.models import get_renderer

    renderer = get_renderer(None, "Qwen/Qwen3-0.6B")
    root = tmp_path_factory.mktemp("jsonl-fuzz")

    @FUZZ
    @given(
        lines=st.lists(jsonl_line, max_size=5),
        sep=st.sampled_from([b"\n", b"\r\n", b"\n\n"]),
        max_length=st.integers(-1, 64),
        train_on=st.sampled_from(["last_assistant", "all_assistant", "all"]),
        holdout=st.sampled_from([0.0, 0.5, 1.0]),
    )
    def run(lines, sep, max_length, train_on, holdout) -> None:
        tried("edges: JSONL datasets")
        path = root / "data.jsonl"
        path.write_bytes(sep.join(lines))
        try:
            ds = load_dataset(
                path,
                renderer=renderer,
                max_length=max_length,
                train_on=train_on,
                holdout_fraction=holdout,
                workers=1,
            )
        except (DatasetError, ConfigurationError) as exc:
            assert str(exc)
        else:
            assert len(ds.train) >= 1 and len(ds.fingerprint) == 64

    run()


# ---- block fields ---------------------------------------------------------------------------


def test_fuzz_lora_config_block_fields() -> None:
    from prefect_tinker import TinkerLoraConfig

    @FUZZ
    @given(
        fields=st.dictionaries(
            st.sampled_from(["rank", "seed", "train_mlp", "train_attn", "train_unembed"])
            | st.text(max_size=6),
            json_values,
            max_size=5,
        )
    )
    def run(fields) -> None:
        tried("edges: TinkerLoraConfig fields")
        try:
            block = TinkerLoraConfig(**fields)
        except (ValidationError, ConfigurationError):
            return
        assert block.rank >= 1
        assert block.train_mlp or block.train_attn or block.train_unembed

    run()


secret_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=12, max_size=40)


def test_fuzz_credential_blocks_validate_and_never_show_their_secret() -> None:
    from prefect_tinker import HuggingFaceCredentials, TinkerCredentials

    @FUZZ
    @given(
        key=secret_text,
        base_url=st.none() | st.text(max_size=30) | json_values,
        project_id=st.none() | st.text(max_size=10) | json_values,
        endpoint=st.none() | st.text(max_size=30) | json_values,
    )
    def run(key, base_url, project_id, endpoint) -> None:
        tried("edges: TinkerCredentials / HuggingFaceCredentials fields")
        secret = "SECRET" + key
        try:
            creds = TinkerCredentials(api_key=secret, base_url=base_url, project_id=project_id)
        except (ValidationError, ConfigurationError):
            creds = None
        try:
            hf = HuggingFaceCredentials(token=secret, endpoint=endpoint)
        except (ValidationError, ConfigurationError):
            hf = None
        for block in (creds, hf):
            if block is None:
                continue
            shown = [
                repr(block),
                str(block),
                block.model_dump_json(),
                json.dumps(block.model_dump(mode="json")),
            ]
            assert not [s for s in shown if secret in s]
        if creds is not None and not creds.is_local:
            assert isinstance(creds.resolve()[1], SecretStr)

    run()


# ---- CLI ------------------------------------------------------------------------------------

# Commands that do not start long-lived work (serve, run, quickstart stay out of the fuzz).
COMMANDS = (
    [],
    ["--help"],
    ["runs", "list"],
    ["checkpoints", "list"],
    ["download"],
    ["inspect"],
    ["push-hf"],
    ["publish"],
    ["unpublish"],
    ["ttl"],
    ["delete"],
    ["local"],
    ["blocks"],
    ["models"],
    ["nonsense"],
)
ARG_POOL = (
    "--format",
    "json",
    "table",
    "--limit",
    "0",
    "-5",
    "99999999999999999999",
    "--block",
    "--concurrency",
    "--overwrite",
    "--yes",
    "--tensors",
    "--base",
    "--revision",
    "--tinker-path",
    "tinker://ghost:train:0/weights/x",
    "tinker://ghost:train:0/external_weights/x",
    "tinker://",
    "none",
    "3600",
    ".",
    "..",
    "-",
    "--",
    "user/repo",
)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """A live service with an unknown key: every network command fails fast with a 401."""
    from prefect_tinker.local import LocalTinker

    with LocalTinker(tmp_path_factory.mktemp("cli-fuzz-tinker"), api_keys=("tml-cli-fuzz",)) as svc:
        yield {
            "TINKER_BASE_URL": svc.base_url,
            "TINKER_API_KEY": "tml-not-accepted",
            "HF_TOKEN": "",
            "HF_HUB_OFFLINE": "1",
            "COLUMNS": "200",
        }


def test_fuzz_cli_arguments_exit_0_1_2_without_traceback(cli_env, tmp_path_factory) -> None:
    from typer.testing import CliRunner

    from prefect_tinker.cli import app

    runner = CliRunner()
    workdir = tmp_path_factory.mktemp("cli-fuzz-cwd")

    @FUZZ
    @given(
        command=st.sampled_from(COMMANDS),
        args=st.lists(
            st.sampled_from(ARG_POOL)
            | st.text(
                st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12,
            ),
            max_size=5,
        ),
    )
    def run(command, args) -> None:
        tried("edges: CLI arguments")
        argv = [*command, *args]
        import os

        old = os.getcwd()
        os.chdir(workdir)
        try:
            result = runner.invoke(app, argv, env=cli_env)
        finally:
            os.chdir(old)
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            # `main()` turns a PrefectTinkerError into one line and exit 2.
            assert isinstance(exc, PrefectTinkerError), (argv, repr(exc), result.output[-500:])
            return
        assert result.exit_code in (0, 1, 2), (argv, result.exit_code, result.output[-500:])
        assert "Traceback" not in result.output, (argv, result.output[-800:])

    run()
