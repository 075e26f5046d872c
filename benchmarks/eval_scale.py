"""``refine eval`` and ``refine export`` as the output file grows: wall time and peak RSS.

Output files are synthesised as ``refine run`` writes them (Trajectory records with three
drafts of ~600 characters, two rewards, usage and latency), then each command runs in its own
process, sizes interleaved round by round, so its peak RSS (``wait4``) is its own.

    python -m benchmarks.eval_scale --sizes 1000 10000 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from flows.data.records import Draft, Trajectory, Usage
from tests.cli_helpers import REFINE

WORDS = ("council", "library", "depot", "grant", "roof", "schools", "bus", "stop", "budget")


def write_output(path: Path, items: int, seed: int = 0) -> None:
    """``items`` records of three drafts each, rewards rising noisily with the step."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for n in range(items):
            drafts = []
            for step in (1, 2, 3):
                text = " ".join(rng.choice(WORDS) for _ in range(90))
                score = min(1.0, max(0.0, 0.3 + 0.1 * step + rng.gauss(0, 0.1)))
                drafts.append(
                    Draft(
                        step=step,
                        text=text,
                        finish_reason="stop",
                        usage=Usage(prompt_tokens=400 + 90 * step, completion_tokens=90),
                        latency_s=rng.uniform(0.2, 1.5),
                        rewards={"rouge_l": round(score, 6), "chrf": round(score * 0.9, 6)},
                    )
                )
            record = Trajectory(
                id=f"item-{n}",
                status="ok",
                output=drafts[-1].text,
                drafts=drafts,
                stop_reason="max_steps",
                selected_step=3,
                reward="rouge_l",
            )
            fh.write(record.model_dump_json() + "\n")


def measure(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command in its own process."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"{args[:3]} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval-scale-") as folder:
        work = Path(folder)
        files = {}
        for size in options.sizes:
            files[size] = work / f"out-{size}.jsonl"
            write_output(files[size], size)
        commands = {
            "eval": lambda f: [REFINE, "eval", str(f), "--out-dir", str(work / "ev")],
            "export": lambda f: [REFINE, "export", str(f), "--format", "trajectory", "--to",
                                 str(work / "steps.jsonl")],
        }  # fmt: skip
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(options.repeat):
            for size in options.sizes:  # interleaved: noise hits every size alike
                for name, build in commands.items():
                    results.setdefault((name, size), []).append(measure(build(files[size])))
        header = ("command", "items", "file MiB", "wall s", "ms/item", "RSS MiB")
        print(f"{header[0]:8} " + " ".join(f"{h:>8}" for h in header[1:]))
        for name in commands:
            for size in options.sizes:
                runs = results[(name, size)]
                wall = statistics.median(r[0] for r in runs)
                rss = statistics.median(r[1] for r in runs)
                mib = files[size].stat().st_size / 2**20
                per_item = wall / size * 1000
                print(f"{name:8} {size:>8} {mib:>8.1f} {wall:>8.2f} {per_item:>8.3f} {rss:>8.0f}")
            small, large = min(options.sizes), max(options.sizes)
            ratio = statistics.median(r[1] for r in results[(name, large)]) / statistics.median(
                r[1] for r in results[(name, small)]
            )
            print(f"{name}: peak RSS {large:,} items / {small:,} items = {ratio:.2f}x")


if __name__ == "__main__":
    main()
