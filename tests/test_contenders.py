"""The comparison's contenders: what each loads before its clock starts, and its flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.contenders import parse

ROOT = Path(__file__).resolve().parent.parent


def test_flow_contender_loads_what_prefect_loads_on_a_first_flow_call() -> None:
    """Prefect imports its engines, graphviz (Flow.__call__) and FastAPI's encoder (the flow
    run's parameters) on a flow's first call; the flow contender loads them before its clock,
    as the floor loads the SDK, so the timed region holds no library loading (issue 17)."""
    code = (
        "import importlib, json, sys\n"
        "from benchmarks.contenders import _IMPORTS\n"
        "for name in _IMPORTS['flow']: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    for module in ("prefect.flow_engine", "prefect.task_engine", "graphviz", "fastapi.encoders"):
        assert module in loaded, module


def test_chunks_in_flight_reaches_the_flow_contender() -> None:
    common = ["--base-url", "http://x/v1", "--data", "d.jsonl", "--items", "1"]
    assert parse(["flow", *common, "--chunks-in-flight", "7"]).chunks_in_flight == 7
    assert parse(["flow", *common]).chunks_in_flight is None
