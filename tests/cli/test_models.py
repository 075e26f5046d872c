"""``refine models``: the catalogue, as a user sees it, through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.local.catalogue import CATALOGUE, DEFAULT_MODEL
from tests.cli_helpers import run_refine


def test_refine_models_lists_every_entry_and_marks_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: nothing assembled
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for entry in CATALOGUE:
        assert entry.name in text
        assert entry.install_command.split(" (")[0] in text
        assert entry.licence in text
    assert f"{DEFAULT_MODEL} (default)" in text
    assert "491 MB" in text and "pip install 'prefect-refine[local-1.5b]'" in text
    rows = [line for line in result.output.splitlines() if DEFAULT_MODEL in line]
    assert rows and "no" in rows[0].split("│")[3]  # not in this (empty) cache


def test_an_unknown_local_model_lists_the_catalogue(tmp_path: Path) -> None:
    result = run_refine(["serve-model", "--local-model", "gpt-5"], env={"PATH": "/usr/bin"})
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "unknown local model 'gpt-5'" in message
    assert all(entry.name in message for entry in CATALOGUE)
