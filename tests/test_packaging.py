"""The built wheel carries the packaged templates; public names match ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_PACKAGES = ["prompts", "postprocess"]  # flows: see test_the_public_face_of_flows


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
    assert "flows/cli/app.py" in names and "refine/errors.py" in names
    assert "flows/view/report.html.j2" in names  # refine report's page
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


def _modules() -> list[str]:
    """Every module of the four packages, sub-packages included (``__main__`` is a script)."""
    names = []
    for package in ("flows", "prompts", "postprocess", "refine"):
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, package + "."):
            if not info.ispkg and not info.name.endswith("__main__"):
                names.append(info.name)
    return names


@pytest.mark.parametrize("module", _modules())
def test_module_all_lists_only_real_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    exported = mod.__all__
    assert exported and all(hasattr(mod, name) for name in exported)
    assert not any(name.startswith("_") for name in exported)


FLOWS_PUBLIC = [
    "BatchSummary",
    "Draft",
    "Item",
    "RunConfig",
    "SideRequest",
    "StopReason",
    "Trajectory",
    "Usage",
    "refine_batch",
    "refine_eval",
    "refine_one",
]


def test_the_public_face_of_flows() -> None:
    """``from flows import refine_batch, RunConfig, Trajectory`` works, names resolve to their
    defining modules, and ``import flows`` alone loads neither Prefect's engine nor the client."""
    import flows

    assert sorted(flows.__all__) == FLOWS_PUBLIC
    from flows import RunConfig, Trajectory, refine_batch
    from flows.batch import refine_batch as defined
    from flows.config.run import RunConfig as config_class
    from flows.data.records import Trajectory as record_class

    assert refine_batch is defined and RunConfig is config_class and Trajectory is record_class
    assert all(getattr(flows, name) is not None for name in FLOWS_PUBLIC)
    with pytest.raises(AttributeError):
        _ = flows.not_a_name  # type: ignore[attr-defined]
    code = "import sys, flows; print(sorted(m for m in ('openai', 'prefect') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
