"""Ours against the plain asyncio floor and DSPy, side by side, on the fake server.

Starts the project's fake OpenAI-compatible server in its own process (fixed latency per
request, no request log) and a real Prefect server, then runs each contender
(:mod:`benchmarks.contenders`) in a fresh process, ``--repeat`` rounds, rotating the order each
round so drift on a shared machine hurts all alike. The server counts the requests it received,
which must equal what each contender says it sent. Prints medians and ratios.

    python -m benchmarks.compare --items 2000 --steps 3 --latency-ms 50 --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.contenders import write_dataset
from tests.cli_helpers import fake_server_process
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer

Figures = dict[str, Any]


def run_contender(
    name: str, base_url: str, data: Path, args: argparse.Namespace, env: dict[str, str],
    work: Path, chunk_size: int | None = None, cache_dir: Path | None = None,
    extra: tuple[str, ...] = (), fake_server: bool = True, chunks_in_flight: int | None = None,
) -> Figures:  # fmt: skip
    """One contender in its own process; its JSON figures plus the server's request count.

    ``extra`` adds contender flags (model, sampling); with ``fake_server=False`` (a real model
    server, which counts nothing for us) the contender's own count stands in for the server's.
    """
    control = FakeOpenAIControl(base_url) if fake_server else None
    before = control.stats()["requests"] if control else 0
    command = [
        sys.executable, "-m", "benchmarks.contenders", name,
        "--base-url", base_url, "--data", str(data), "--items", str(args.items),
        "--steps", str(args.steps), "--concurrency", str(args.concurrency),
        "--out", str(work / f"out-{name}-{os.getpid()}-{len(list(work.iterdir()))}.jsonl"),
    ]  # fmt: skip
    if chunk_size is not None:
        command += ["--chunk-size", str(chunk_size)]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    if chunks_in_flight is not None:
        command += ["--chunks-in-flight", str(chunks_in_flight)]
    command += extra
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    figures: Figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["server_requests"] = (
        control.stats()["requests"] - before if control else figures["requests"]
    )
    return figures


def summarize(label: str, runs: list[Figures], items: int) -> Figures:
    """Medians of one contender's rounds."""
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    requests = runs[0]["server_requests"]
    return {
        "label": label,
        "wall_s": wall,
        "req_s": requests / wall,
        "items_s": items / wall,
        "cpu_s": cpu,
        "cpu_ms_per_req": 1000 * cpu / requests,
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "requests": requests,
        "walls": [round(r["wall_s"], 2) for r in runs],
        "counts_agree": all(r["requests"] == r["server_requests"] for r in runs),
    }


def print_table(rows: list[Figures], floor: Figures, dspy: Figures | None) -> None:
    print(
        f"{'contender':<18}{'wall s':>8}{'req/s':>9}{'items/s':>9}{'cpu s':>8}"
        f"{'ms cpu/req':>11}{'RSS MiB':>9}{'vs floor':>9}{'cpu vs floor':>13}{'vs dspy':>8}"
    )
    for row in rows:
        vs_dspy = f"{row['req_s'] / dspy['req_s']:.2f}x" if dspy else "-"
        print(
            f"{row['label']:<18}{row['wall_s']:>8.2f}{row['req_s']:>9.1f}{row['items_s']:>9.1f}"
            f"{row['cpu_s']:>8.2f}{row['cpu_ms_per_req']:>11.2f}{row['peak_rss_mib']:>9.0f}"
            f"{row['req_s'] / floor['req_s']:>8.2f}x"
            f"{row['cpu_ms_per_req'] / floor['cpu_ms_per_req']:>12.2f}x{vs_dspy:>8}"
        )
    for row in rows:
        if not row["counts_agree"]:
            print(f"WARNING: {row['label']}: its request count and the server's disagree")


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-compare-"))
    data = write_dataset(work / "data.jsonl", args.items)
    prefect = PrefectServer(work / "prefect")
    prefect.start(timeout=300)  # a loaded shared machine can take minutes
    env = {**os.environ, **prefect.client_env()}
    # (label, contender, chunk size, chunks in flight)
    contenders: list[tuple[str, str, int | None, int | None]] = [
        ("flow (default)", "flow", None, None)
    ]
    contenders += [(f"flow (chunk {k})", "flow", k, None) for k in args.chunk_sizes]
    contenders += [(f"flow ({n} chunks)", "flow", None, n) for n in args.chunks_in_flight]
    contenders += [("asyncio (floor)", "asyncio", None, None)]
    if not args.no_dspy:
        contenders += [("dspy", "dspy", None, None)]
    runs: dict[str, list[Figures]] = {label: [] for label, *_ in contenders}
    try:
        with fake_server_process("--latency-ms", str(args.latency_ms), "--max-log", "0") as url:
            for round_ in range(args.repeat):
                shift = round_ % len(contenders)
                for label, name, chunk, window in contenders[shift:] + contenders[:shift]:
                    figures = run_contender(
                        name, url, data, args, env, work, chunk, chunks_in_flight=window
                    )
                    runs[label].append(figures)
                    print(
                        f"round {round_ + 1} {label}: {figures['wall_s']:.2f} s, "
                        f"{figures['server_requests']} requests",
                        flush=True,
                    )
    finally:
        prefect.stop()
    rows = [summarize(label, figures, args.items) for label, figures in runs.items()]
    by_label = {row["label"]: row for row in rows}
    print(
        f"\n{args.items} items x {args.steps} steps, latency {args.latency_ms:g} ms, "
        f"concurrency {args.concurrency}; medians of {args.repeat} rounds"
    )
    print_table(rows, by_label["asyncio (floor)"], by_label.get("dspy"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=[])
    parser.add_argument(
        "--chunks-in-flight", type=int, nargs="*", default=[], help="ours with N chunks at once"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-dspy", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    main(parser.parse_args())
