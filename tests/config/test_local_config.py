"""Configuring the local model: mistakes fail before anything starts, with a clear message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.config.local import LocalModelConfig
from flows.config.run import build_run_config
from flows.local.model import resolve_model
from refine.errors import ConfigError
from tests.cli_helpers import cli_env, run_refine
from tests.prefect_server import PrefectServer


def test_a_model_without_an_endpoint_is_refused_not_served_locally(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    dataset = tmp_path / "in.jsonl"
    dataset.write_text('{"id": "1", "input": "hi"}\n')
    env = cli_env(prefect_server, tmp_path, REFINE_MODEL="gpt-x")
    result = run_refine(["run", str(dataset), "-o", str(tmp_path / "out.jsonl")], env)
    assert result.returncode == 2
    assert "model 'gpt-x' is set but no endpoint is" in result.stderr
    assert "--base-url" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_serve_model_rejects_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "weights.bin"
    fake.write_bytes(b"PK\x03\x04 not a model")
    result = run_refine(["serve-model", "--model-path", str(fake)], env={"PATH": "/usr/bin"})
    assert result.returncode == 2
    assert f"{fake}: not a GGUF model file" in " ".join(result.stderr.split())


def test_a_missing_model_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.gguf: model file not found"):
        resolve_model(LocalModelConfig(model="/nowhere.gguf"))


def test_local_model_table_in_the_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "refine.toml"
    config_file.write_text('[local_model]\nparallel = 3\nmodel_path = "m/x.gguf"\nthreads = 1\n')
    local = build_run_config(config_file=config_file).local_model
    assert local.parallel == 3 and local.threads_per_slot() == 1
    assert local.model_path == tmp_path / "m" / "x.gguf"  # relative to the file, like other paths


def test_an_unknown_local_model_key_names_the_file_and_field(tmp_path: Path) -> None:
    config_file = tmp_path / "refine.toml"
    config_file.write_text("[local_model]\nslots = 2\n")
    with pytest.raises(ConfigError) as caught:
        build_run_config(config_file=config_file)
    assert str(config_file) in str(caught.value)
    assert "local_model.slots" in str(caught.value)


def test_threads_are_shared_between_slots() -> None:
    cores = os.cpu_count() or 1
    assert LocalModelConfig(parallel=2, threads=None).threads_per_slot() == max(1, cores // 2)
    assert LocalModelConfig(parallel=4 * cores, threads=None).threads_per_slot() == 1
    assert LocalModelConfig(parallel=1, threads=3).threads_per_slot() == 3


def test_checking_the_extra_does_not_load_llama_cpp() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from flows.local.model import check_local_extra; check_local_extra(); "
        "print('llama_cpp' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the extra is installed where tests run
    assert done.stdout.strip() == "False"
