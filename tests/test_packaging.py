"""The built wheel carries the packaged templates; public names match ``__all__``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_PACKAGES = ["prompts", "postprocess"]  # flows and refine re-export nothing


def test_wheel_ships_every_packaged_template(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("prefect_refine-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT))
        for pattern in ("*.j2", "*.jsonl")
        for path in (ROOT / "prompts").rglob(pattern)
    }
    assert any(name.endswith("summarize/refine.j2") for name in expected)
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert "flows/cli.py" in names and "refine/errors.py" in names
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "refine = flows.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.parametrize("package", API_PACKAGES)
def test_public_names_are_what_all_says(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert exported, f"{package} exports nothing"
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names missing {name!r}"
    public = {n for n, v in vars(module).items() if not n.startswith("_") and callable(v)}
    assert public <= set(exported), f"{package} exposes names outside __all__"


@pytest.mark.parametrize(
    "module",
    [
        "flows.settings",
        "flows.records",
        "flows.client",
        "flows.retry",
        "flows.cache",
        "flows.dataset",
        "flows.output",
        "flows.engine",
        "flows.runtime",
        "flows.batch",
        "flows.batch_summary",
        "flows.loop_settings",
        "flows.loop_plan",
        "flows.task_defaults",
        "flows.model_calls",
        "flows.assess",
        "flows.stopping",
        "postprocess.sandbox_checks",
        "flows.cli",
        "flows.cli_guard",
        "flows.cli_templates",
        "flows.dry_run",
        "flows.lifecycle",
        "flows.progress",
        "refine.errors",
        "refine.jsonl",
    ],
)
def test_module_all_lists_only_real_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    exported = mod.__all__
    assert exported and all(hasattr(mod, name) for name in exported)
    assert not any(name.startswith("_") for name in exported)
