"""Reading a CSV dataset: our record-by-record reader against Python's csv module.

Our reader (``flows.data.dataset.read_rows``) parses CSV itself so that one bad record (a field
past csv's 131,072-character limit, bytes that are not UTF-8, a quote never closed) is that
record's problem and the read goes on; csv.reader stops for good at the first such record. This
prints what that costs on clean data (the parser alone, and the whole read that also builds and
checks the Items): the median of ``--repeats`` reads of the same file by each,
side by side in one process, and their ratio.

    python -m benchmarks.csv_read --rows 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flows.data import dataset
from flows.data.dataset import read_rows


def write_csv(path: Path, rows: int) -> None:
    """``rows`` records of id, text (with commas, quotes and a line break) and reference."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "reference"])
        for i in range(rows):
            text = f'Report {i}: the pump, valve "B{i % 7}" and\nthe meter were checked.'
            writer.writerow([f"r{i}", text, f"summary {i}"])


def csv_module(path: Path) -> int:
    """Rows read by csv.DictReader, the plain way a script would."""
    text = path.read_bytes().decode("utf-8-sig")
    return sum(1 for _ in csv.DictReader(io.StringIO(text, newline="")))


def our_parser(path: Path) -> int:
    """Rows our CSV parser alone finds (no Items built, no ids or Unicode checked)."""
    rows, problems = dataset._csv_rows(path.read_bytes())  # the parser, measured on its own
    assert not problems, problems[:3]
    return len(rows)


def ours(path: Path) -> int:
    items, problems = read_rows(path)
    assert not problems, problems[:3]
    return len(items)


def median_s(read: Callable[[Path], int], path: Path, repeats: int, rows: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        assert read(path) == rows
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        write_csv(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        plain = median_s(csv_module, path, args.repeats, args.rows)
        parse = median_s(our_parser, path, args.repeats, args.rows)
        mine = median_s(ours, path, args.repeats, args.rows)
    print(f"{args.rows:,} rows, {size_mb:.1f} MB, median of {args.repeats} reads each")
    print(f"  csv.DictReader          {plain:7.2f} s")
    print(f"  our parser alone        {parse:7.2f} s   ({parse / plain:.1f}x csv.DictReader)")
    print(f"  read_rows (rows, Items) {mine:7.2f} s   ({mine / plain:.1f}x csv.DictReader)")
    print(f"  per row: {mine / args.rows * 1e6:.1f} us (csv: {plain / args.rows * 1e6:.1f} us)")


if __name__ == "__main__":
    main()
