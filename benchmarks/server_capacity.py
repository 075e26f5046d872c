"""How many requests/s the fake server sustains alone: it must never be what a benchmark measures.

Drives the fake server (no latency, no log) with wrk, a C load generator (Debian package
``wrk``), posting the same chat body the contenders send, at high concurrency. Prints the
sustained requests/s and, given the JSON medians of a ``benchmarks.compare`` run, the ratio to
the highest request rate any contender reached there (the target is at least 5x).

    python -m benchmarks.server_capacity --seconds 10 --connections 128 --against medians.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.cli_helpers import fake_server_process

_BODY = {
    "model": "m",
    "max_tokens": 512,
    "messages": [
        {
            "role": "user",
            "content": "Give three tips for task 7.\n\nStep 2. Previous draft:\ndraft-0123456789 x",
        }
    ],
}
_LUA = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{json.dumps(_BODY)}]]
"""


def sustained_rate(url: str, seconds: int, connections: int, threads: int) -> float:
    """wrk's requests/s against ``url``'s chat endpoint."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", script.name,
         f"{url}/chat/completions"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    Path(script.name).unlink()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        raise RuntimeError(f"the fake server answered {errors.group(1)} errors:\n{done.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if match is None:
        raise RuntimeError(f"no rate in wrk's output:\n{done.stdout}")
    return float(match.group(1))


def main(args: argparse.Namespace) -> None:
    with fake_server_process("--max-log", "0") as url:
        rate = sustained_rate(url, args.seconds, args.connections, args.threads)
    print(f"fake server alone: {rate:.0f} requests/s "
          f"(wrk, {args.connections} connections, {args.seconds} s, no latency)")  # fmt: skip
    if args.against:
        rows = json.loads(args.against.read_text())
        best = max(rows, key=lambda row: row["req_s"])
        print(f"highest contender rate: {best['req_s']:.0f} req/s ({best['label']}); "
              f"headroom {rate / best['req_s']:.1f}x (target: at least 5x)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--against", type=Path, default=None)
    main(parser.parse_args())
