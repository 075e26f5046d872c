"""``refine eval`` and ``refine export`` only read files: they never load the model client.

Each command runs in a fresh interpreter through the real CLI entry point (``flows.cli:app``);
afterwards the process lists the top-level packages it imported. openai, httpx2 and tenacity
belong to the call (``flows.llm``), Prefect's flow engine to ``refine run``: importing them
would cost every read-only command their start-up time and tie it to their versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "previous_release"
NEVER = {"openai", "httpx2", "tenacity", "llama_cpp"}

_PROBE = """
import json, sys
from flows.cli import app
sys.argv = ["refine", *json.loads(sys.argv[1])]
try:
    app()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("MODULES=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
sys.exit(code)
"""


def _run(args: list[str], cwd: Path) -> tuple[int, set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES="))
    return proc.returncode, set(json.loads(line.removeprefix("MODULES="))), proc.stderr


@pytest.fixture
def run_files(tmp_path: Path) -> Path:
    for name in ("data.jsonl", "out.jsonl"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "out.jsonl"],
        ["eval", "out.jsonl", "--input", "data.jsonl", "--score", "chrf"],
        ["eval", "--compare", "out.jsonl", "out.jsonl"],
        ["export", "out.jsonl", "--format", "trajectory", "--to", "t.jsonl"],
        [
            "export",
            "out.jsonl",
            "--format",
            "sft",
            "--input",
            "data.jsonl",
            "--task",
            "summarize",
            "--to",
            "s.jsonl",
        ],
    ],
    ids=["eval", "eval-score", "eval-compare", "export-trajectory", "export-sft"],
)
def test_read_only_commands_never_import_the_model_client(run_files: Path, args: list[str]) -> None:
    code, modules, stderr = _run(args, run_files)
    assert code == 0, stderr[-2000:]
    assert "flows" in modules  # the probe really ran the command
    assert not modules & NEVER, sorted(modules & NEVER)
    if args[0] == "export":
        assert (run_files / args[-1]).stat().st_size > 0


def test_the_check_can_fail_a_module_that_builds_a_run_loads_the_client() -> None:
    code = "import json, sys, flows.loop.assemble; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {name.split(".")[0] for name in json.loads(proc.stdout)}
    assert {"openai", "tenacity"} <= loaded
