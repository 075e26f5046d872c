"""The rooms' layering holds, and the check that says so can fail.

``lint-imports`` reads the contracts in ``pyproject.toml`` ([tool.importlinter]); CI runs it next
to ruff and mypy. Here it runs on the repository (kept), then on a copy with one import added
against a contract (broken, naming that contract), and the import graph is checked for cycles.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "prompts", "postprocess", "refine")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_repository_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("flows/eval/stats.py", "import flows.llm.client", "the viewers only read files"),
        ("flows/loop/render.py", "import flows.batch", "Rooms are layered"),
        ("prompts/loader.py", "import postprocess.specs", "prompts and postprocess stand alone"),
        ("flows/data/records.py", "import prefect", "do not import Prefect themselves"),
    ],
    ids=[
        "eval-imports-client",
        "loop-imports-door",
        "prompts-imports-postprocess",
        "records-prefect",
    ],
)
def test_an_import_against_a_contract_breaks_it(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa: E402, F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert " 0 broken" not in result.stdout, result.stdout[-3000:]
    report = " ".join(result.stdout.split())  # contract names wrap at the terminal's width
    assert contract in report.partition("Broken contracts")[2], result.stdout[-3000:]


def test_no_import_cycle() -> None:
    """No module reaches itself through its imports (Tarjan's strongly connected components)."""
    graph = grimp.build_graph(*PACKAGES)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges.get(module, []):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert len(edges) > 100  # the graph really holds the packages
    assert cycles == []
