"""Choosing the local model (`[local_model] model`, `--local-model`) and its serving defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config.local import LocalModelConfig
from flows.config.run import build_run_config
from flows.local.catalogue import DEFAULT_MODEL, find_entry
from flows.local.endpoint import request_deadline_s
from flows.local.model import ServedModel, resolve_model, serving_config
from refine.errors import ConfigError


def _config(tmp_path: Path, table: str) -> LocalModelConfig:
    config_file = tmp_path / "refine.toml"
    config_file.write_text("[local_model]\n" + table)
    return build_run_config(config_file=config_file).local_model


def test_the_default_is_the_instruct_model_with_its_own_template() -> None:
    local = LocalModelConfig()
    assert local.model is None and DEFAULT_MODEL == "qwen2.5-coder-0.5b-instruct"
    served = serving_config(local, find_entry(DEFAULT_MODEL))
    assert served.chat_format is None  # llama-cpp-python then uses the GGUF's chat template
    assert served.stop_for("prose") == []  # the template's end of turn ends the answer
    assert served.stop_for("code") == list(find_entry(DEFAULT_MODEL).stop_code)
    assert not any("###" in stop for stop in served.stop + served.stop_code)
    assert served.max_tokens == 512
    # a step-3 codegen fix needed 3,315 tokens on HumanEval: 2,048 per slot refused it
    assert served.ctx_size == 8192 and LocalModelConfig().ctx_size == 4096


def test_the_gemma_base_model_keeps_alpaca_and_its_stops(tmp_path: Path) -> None:
    local = _config(tmp_path, 'model = "gemma-3-270m"\n')
    assert local.model == "gemma-3-270m" and local.model_path is None
    served = serving_config(local, find_entry("gemma-3-270m"))
    assert served.chat_format == "alpaca" and served.max_tokens == 256
    assert served.ctx_size == 2048
    assert served.stop_for("prose") == ["###", "\n\n"] and served.stop_for("code") == ["###"]


def test_the_config_table_overrides_the_catalogue_defaults(tmp_path: Path) -> None:
    local = _config(
        tmp_path, 'model = "gemma-3-270m"\nchat_format = "gemma"\nstop = ["END"]\nmax_tokens = 99\n'
    )
    served = serving_config(local, find_entry("gemma-3-270m"))
    assert (served.chat_format, served.stop, served.max_tokens) == ("gemma", ["END"], 99)
    assert served.stop_code == ["###"]  # the one field the table left unset


def test_a_model_path_in_the_file_is_relative_to_it(tmp_path: Path) -> None:
    assert _config(tmp_path, 'model = "m/x.gguf"\n').model_path == tmp_path / "m" / "x.gguf"
    assert _config(tmp_path, 'model = "x.gguf"\n').model_path == tmp_path / "x.gguf"
    assert _config(tmp_path, 'model_path = "y.bin"\n').model_path == tmp_path / "y.bin"


def test_the_command_line_model_beats_the_files_model_path(tmp_path: Path) -> None:
    config_file = tmp_path / "refine.toml"
    config_file.write_text('[local_model]\nmodel_path = "old.gguf"\n')
    overrides = {"local_model": {"model": "smollm2-135m-instruct"}}
    local = build_run_config(overrides, config_file).local_model
    assert local.model == "smollm2-135m-instruct" and local.model_path is None


def test_model_and_model_path_together_in_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        _config(tmp_path, 'model = "gemma-3-270m"\nmodel_path = "x.gguf"\n')


def test_an_unknown_model_name_lists_the_catalogue(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(LocalModelConfig(model="llama-70b"), tmp_path / "models", [str(tmp_path)])
    assert "unknown local model 'llama-70b'" in str(caught.value)
    assert "qwen2.5-coder-1.5b-instruct" in str(caught.value)


def test_a_gguf_given_by_path_uses_its_own_template_by_default(tmp_path: Path) -> None:
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    served = resolve_model(LocalModelConfig(model=str(model)))
    assert served.entry is None and served.path == model and served.alias == "mine"
    assert served.config.chat_format is None and served.config.stop_for("prose") == []


def test_the_local_request_deadline_covers_two_full_answers(tmp_path: Path) -> None:
    entry = find_entry(DEFAULT_MODEL)
    assert entry.decode_tokens_per_s is not None
    served = ServedModel(tmp_path / "x.gguf", entry, serving_config(LocalModelConfig(), entry))
    deadline = request_deadline_s(served, 512, floor_s=120.0)
    assert deadline >= 2 * 512 / entry.decode_tokens_per_s  # queued behind one, then its own
    assert deadline > 120.0  # the remote default would cut answers of the default model short
    assert request_deadline_s(served, 1, floor_s=1000.0) == 1000.0  # never under the floor
    assert request_deadline_s(served, 1024, 120.0) > deadline
