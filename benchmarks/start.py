"""How soon ``refine run`` sends its first request (issue 17, "a prompt start"), per mode.

Each round runs a one-item, one-step ``refine run`` against the fake OpenAI server (its own
process) in every mode, one after the other, and times it from the command's start to the
fake server's first request:

- ``configured``: PREFECT_API_URL names a running Prefect server (tests/prefect_server.py);
- ``cold``: no server configured and none running: the run starts the temporary server it
  then keeps warm (the README's default mode, first run);
- ``warm``: no server configured; the server the previous run kept warm is reused;
- ``per-run``: REFINE_SERVER_IDLE_TIMEOUT=0: a temporary server of the run's own, as before.

It also prints the import time of the run path (``python -X importtime``).

    python -m benchmarks.start --repeat 5

To compare with an earlier commit, run its code from a copy: ``git archive REV flows refine
prompts postprocess | tar -x -C /tmp/old``, then ``PYTHONPATH=/tmp/old python -m
benchmarks.start`` (its cold and warm runs are then per-run ones: it kept no server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.cli_helpers import REFINE, fake_server_process
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer

MODES = ("configured", "cold", "warm", "per-run")
_RUN_PATH = "import flows.cli.app, flows.loop.preflight, flows.ops.lifecycle, flows.batch"


def first_request_delay(url: str, data: Path, work: Path, env: dict[str, str]) -> float:
    """Seconds from starting ``refine run`` to the fake server seeing its first request."""
    control = FakeOpenAIControl(url)
    control.reset()  # also clears first_seen_at
    started = time.time()
    subprocess.run(
        [REFINE, "run", str(data), "--base-url", url, "--model", "m", "--no-cache", "--quiet",
         "-o", str(work / f"first-{started}.jsonl"), "--steps", "1"],
        env=env, capture_output=True, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    first = control.stats()["first_seen_at"]
    return float(first) - started


def import_time_s(env: dict[str, str]) -> float:
    """Seconds ``python -X importtime`` counts for importing what ``refine run`` imports
    before its first request (the top-level imports' cumulative times, summed; the
    interpreter's own start, ``site`` and ``encodings``, included)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _RUN_PATH],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    total = 0
    for line in result.stderr.splitlines():
        fields = line.split("|")
        # a top-level import: one space before its name (two more per level below)
        top = len(fields) == 3 and not fields[2].startswith("  ")
        if top and line.startswith("import time:") and fields[1].strip().isdigit():
            total += int(fields[1])
    return total / 1e6


def _write_item(path: Path) -> Path:
    path.write_text('{"id": "item-0", "input": "The pump at site 3 was repaired."}\n')
    return path


def _stop_warm(env: dict[str, str]) -> None:
    # not checked: an older refine on PYTHONPATH (to compare) has no `server stop`, nor a server
    subprocess.run([REFINE, "server", "stop"], env=env, capture_output=True)


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-start-"))
    data = _write_item(work / "one.jsonl")
    prefect = PrefectServer(work / "prefect")
    prefect.start(timeout=600)  # a busy machine takes minutes
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    base.update(PREFECT_LOGGING_LEVEL="WARNING", REFINE_CACHE_DIR=str(work / "cache"))
    temp = {**base, "PREFECT_HOME": str(work / "home")}
    envs = {
        "configured": {**base, **prefect.client_env()},
        "cold": temp,
        "warm": temp,
        "per-run": {**temp, "REFINE_SERVER_IDLE_TIMEOUT": "0"},
    }
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        with fake_server_process("--latency-ms", "0", "--max-log", "0") as url:
            # creates the temporary servers' database (a first start: not what is measured)
            first_request_delay(url, data, work, envs["per-run"])
            for round_ in range(args.repeat):
                before: dict[str, Callable[[], None]] = {"cold": lambda: _stop_warm(temp)}
                for mode in MODES:
                    before.get(mode, lambda: None)()
                    times[mode].append(first_request_delay(url, data, work, envs[mode]))
                print(f"round {round_ + 1}: " + ", ".join(
                    f"{mode} {times[mode][-1]:.2f} s" for mode in MODES), flush=True)  # fmt: skip
            imports = [import_time_s(envs["configured"]) for _ in range(args.repeat)]
    finally:
        _stop_warm(temp)
        prefect.stop()
    print(f"\nrefine run start to first request, one item, median of {args.repeat}:")
    for mode in MODES:
        runs = ", ".join(f"{t:.2f}" for t in times[mode])
        print(f"  {mode:<11}{statistics.median(times[mode]):6.2f} s   (runs: {runs})")
    print(
        f"import time of the run path (-X importtime): median {statistics.median(imports):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in imports)})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each runs every mode)")
    main(parser.parse_args())
