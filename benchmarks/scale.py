"""Our flow as the dataset grows, a fully cached re-run, Prefect task runs per item, and the time
from ``refine run`` to its first request.

Every run goes against the fake server (fixed latency, no log) and a real Prefect server, each
flow in its own process (benchmarks.contenders), so peak RSS is that run's alone.

    python -m benchmarks.scale --sizes 1000 5000 20000 --latency-ms 50 --concurrency 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.compare import run_contender
from benchmarks.contenders import write_dataset
from tests.cli_helpers import REFINE, fake_server_process
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer


def task_runs(env: dict[str, str], settle_s: float = 2.0) -> int:
    """Task runs the Prefect server has recorded (REST API: POST /task_runs/count).

    The server records task runs from events, a little after the flow returns: count until the
    figure holds still for ``settle_s``.
    """
    import httpx

    def count() -> int:
        answer = httpx.post(f"{env['PREFECT_API_URL']}/task_runs/count", json={}, timeout=30)
        answer.raise_for_status()
        return int(answer.json())

    last, still_since = count(), time.monotonic()
    while time.monotonic() - still_since < settle_s:
        time.sleep(0.25)
        now = count()
        if now != last:
            last, still_since = now, time.monotonic()
    return last


def first_request_delay(url: str, data: Path, work: Path, env: dict[str, str]) -> float:
    """Seconds from starting ``refine run`` to the fake server seeing its first request."""
    control = FakeOpenAIControl(url)
    control.reset()  # also clears first_seen_at; latency is set again below
    started = time.time()
    subprocess.run(
        [REFINE, "run", str(data), "--base-url", url, "--model", "m", "--no-cache", "--quiet",
         "-o", str(work / f"first-{started}.jsonl"), "--steps", "1"],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    first = control.stats()["first_seen_at"]
    return float(first) - started


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-scale-"))
    prefect = PrefectServer(work / "prefect")
    prefect.start()
    env = {**os.environ, **prefect.client_env()}
    rows: list[dict[str, Any]] = []
    try:
        with fake_server_process("--latency-ms", str(args.latency_ms), "--max-log", "0") as url:
            for size in args.sizes:
                data = write_dataset(work / f"data-{size}.jsonl", size)
                params = argparse.Namespace(**{**vars(args), "items": size})
                before = task_runs(env)
                figures = run_contender("flow", url, data, params, env, work)
                figures["task_runs"] = task_runs(env) - before
                figures["items"] = size
                rows.append(figures)
                print(f"{size} items: {figures['wall_s']:.1f} s, "
                      f"{figures['peak_rss_mib']:.0f} MiB peak", flush=True)  # fmt: skip
            data = write_dataset(work / "data-cache.jsonl", args.cache_items)
            params = argparse.Namespace(**{**vars(args), "items": args.cache_items})
            cache = work / "cache"
            fill = run_contender("flow", url, data, params, env, work, cache_dir=cache)
            reruns = [
                run_contender("flow", url, data, params, env, work, cache_dir=cache)
                for _ in range(args.repeat)
            ]
            small = write_dataset(work / "data-small.jsonl", 10)
            delays = [first_request_delay(url, small, work, env) for _ in range(args.repeat)]
            FakeOpenAIControl(url).set_latency(args.latency_ms / 1000)
    finally:
        prefect.stop()
    _report(args, rows, fill, reruns, delays)


def _report(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    fill: dict[str, Any],
    reruns: list[dict[str, Any]],
    delays: list[float],
) -> None:
    print(f"\nour flow, {args.steps} steps, latency {args.latency_ms:g} ms, "
          f"concurrency {args.concurrency}, default chunk size")  # fmt: skip
    print(f"{'items':>7}{'wall s':>9}{'req/s':>9}{'RSS MiB':>9}{'vs first':>9}"
          f"{'task runs':>10}{'per item':>9}")  # fmt: skip
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        print(
            f"{row['items']:>7}{row['wall_s']:>9.1f}{row['server_requests'] / row['wall_s']:>9.1f}"
            f"{row['peak_rss_mib']:>9.0f}{row['peak_rss_mib'] / base:>8.2f}x"
            f"{row['task_runs']:>10}{row['task_runs'] / row['items']:>9.3f}"
        )
    rerun_s = statistics.median(r["wall_s"] for r in reruns)
    runs = ", ".join(f"{r['wall_s']:.2f}" for r in reruns)
    print(
        f"\ncached re-run of {args.cache_items} items: median {rerun_s:.2f} s (runs: {runs}; CPU "
        f"{statistics.median(r['cpu_s'] for r in reruns):.2f} s) with "
        f"{max(r['server_requests'] for r in reruns)} requests, vs {fill['wall_s']:.2f} s for the "
        f"run that filled the cache ({rerun_s / fill['wall_s']:.1%})"
    )
    print(
        f"refine run start to first request: median {statistics.median(delays):.2f} s "
        f"(runs: {', '.join(f'{d:.2f}' for d in delays)})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cache-items", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=None)
    main(parser.parse_args())
