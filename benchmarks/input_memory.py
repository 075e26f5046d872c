"""Memory and time to check and read a big Parquet dataset, as a run reads it, against holding
its rows as the run did before Parquet inputs (a list of every Item).

Writes a Parquet file of ``--rows`` rows (``guid``, ``article`` of ``--chars`` characters,
``highlights``), then, each in a fresh process so peak memory is that reader's alone:

- ``streamed``: the pre-flight check (``load_input`` with ``--map``, a record batch at a time,
  two passes) and one iteration over its items, as the run's chunks read them;
- ``held``: the same rows read into one list of Items and checked at once, as a run reads a
  JSONL or CSV file (and read every dataset before Parquet inputs);
- ``limit``: the pre-flight check with ``--limit 100`` (reads only the first record batch).

Prints each one's wall time, then its peak of Python memory from a second read under
``tracemalloc`` (Arrow's own buffers, one record batch at a time, are not counted).

    python -m benchmarks.input_memory --rows 1000000 --chars 400
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

MODES = ("streamed", "held", "limit")


def write_parquet(path: Path, rows: int, chars: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    filler = ("The council met on Tuesday to discuss the new bridge. " * (chars // 50 + 1))[:chars]
    writer = None
    step = 100_000
    for start in range(0, rows, step):
        count = min(step, rows - start)
        table = pa.table(
            {
                "guid": [f"n{i:07d}" for i in range(start, start + count)],
                "article": [f"{i}: {filler}" for i in range(start, start + count)],
                "highlights": [f"Summary {i}." for i in range(start, start + count)],
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def measure(mode: str, path: Path) -> dict[str, float]:
    """Run in the child process: one mode's figures."""
    from flows.config.run import build_run_config
    from flows.data.reading import iter_items, open_source
    from flows.loop.preflight import check_items, load_input

    mapped = {"text": "article", "id": "guid", "reference": "highlights"}
    extra = {"limit": 100} if mode == "limit" else {}
    config = build_run_config({"task": "summarize", "input": {"map": mapped, **extra}})

    def read() -> int:
        if mode == "held":
            items = list(iter_items(open_source(path, config.input), config.input))
            check_items(items, config, path)
            return len(items)
        checked = load_input(path, config)
        return sum(1 for _ in checked.items)

    started = time.perf_counter()
    count = read()  # timed without tracemalloc, which slows Python about fourfold here
    wall = time.perf_counter() - started
    tracemalloc.start()
    read()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"items": count, "peak_mib": peak / 2**20, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chars", type=int, default=400)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--path", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.path)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "news.parquet"
        write_parquet(path, args.rows, args.chars)
        size = path.stat().st_size / 2**20
        print(f"{args.rows:,} rows of ~{args.chars} characters: {size:,.0f} MiB of Parquet")
        figures = {}
        for mode in MODES:
            command = [sys.executable, "-m", "benchmarks.input_memory", "--child", mode]
            done = subprocess.run(
                [*command, "--path", str(path)], capture_output=True, text=True, check=True
            )
            figures[mode] = json.loads(done.stdout)
            f = figures[mode]
            print(
                f"{mode:>9}: {f['items']:>9,} items  peak +{f['peak_mib']:8,.0f} MiB  "
                f"{f['wall_s']:7.1f} s"
            )
        ratio = figures["streamed"]["peak_mib"] / max(figures["held"]["peak_mib"], 1e-9)
        print(f"streamed peak / held peak: {ratio:.3f}")


if __name__ == "__main__":
    main()
