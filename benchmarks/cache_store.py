"""The request cache at scale: put throughput, lookup latency (hits and misses) and disk use.

Fills a fresh store through ``RequestCache.put`` (one transaction per put, as a run writes),
then times single lookups through ``RequestCache.get`` from a new connection, as a re-run
reads: median and p99 in microseconds.

    python -m benchmarks.cache_store --entries 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from flows.data.records import CachedAnswer, Usage
from flows.llm.cache import RequestCache
from flows.llm.cache_store import DB_NAME


def entry_key(n: int) -> str:
    """A content-addressed key, spread as request keys are."""
    return hashlib.sha256(f"request {n}".encode()).hexdigest()


def entry_answer(n: int) -> dict[str, Any]:
    """An answer as a run stores it, about 300 bytes of JSON."""
    text = f"Draft {n}: the pump at site {n % 977} was repaired on time and under budget. "
    return CachedAnswer(
        content=(text * 3)[:200],
        finish_reason="stop",
        usage=Usage(prompt_tokens=180 + n % 40, completion_tokens=48 + n % 13),
        token_logprobs=None,
    ).model_dump()


def disk_mib(root: Path) -> dict[str, float]:
    """Size of the database and its WAL and shared-memory files, MiB."""
    names = {"db": DB_NAME, "wal": f"{DB_NAME}-wal", "shm": f"{DB_NAME}-shm"}
    return {
        part: (root / name).stat().st_size / 2**20 if (root / name).exists() else 0.0
        for part, name in names.items()
    }


def lookup_us(cache: RequestCache, keys: list[str], *, hits: bool) -> list[float]:
    """Each lookup's time in microseconds (asserting hits are hits and misses misses)."""
    times = []
    for key in keys:
        started = time.perf_counter_ns()
        found = cache.get(key)
        times.append((time.perf_counter_ns() - started) / 1000)
        if (found is not None) != hits:
            raise SystemExit(f"lookup of {key} gave {'a miss' if hits else 'a hit'}")
    return times


def _p(times: list[float], share: float) -> float:
    return sorted(times)[min(len(times) - 1, int(share * len(times)))]


def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="refine-cache-store-", dir=args.dir))
    try:
        cache = RequestCache(root)
        cache.check_writable()
        size = len(orjson.dumps(entry_answer(0)))
        put_s = put_cpu_s = 0.0  # in put alone, not in making the keys and answers
        for n in range(args.entries):
            key, answer = entry_key(n), entry_answer(n)
            started, cpu = time.perf_counter(), time.process_time()
            cache.put(key, answer)
            put_s += time.perf_counter() - started
            put_cpu_s += time.process_time() - cpu
            if args.progress and n and n % args.progress == 0:
                print(f"  {n:,} entries, {n / put_s:,.0f} puts/s", flush=True)
        open_disk = disk_mib(root)
        if cache.write_errors:
            raise SystemExit(f"{cache.write_errors} puts failed")

        reader = RequestCache(root)  # a new connection, as a re-run opens
        rng = random.Random(0)
        hit_keys = [entry_key(rng.randrange(args.entries)) for _ in range(args.lookups)]
        miss_keys = [entry_key(args.entries + n) for n in range(args.lookups)]
        lookup_us(reader, hit_keys[:1000], hits=True)  # warm-up: the first pages from disk
        hit = lookup_us(reader, hit_keys, hits=True)
        miss = lookup_us(reader, miss_keys, hits=False)
        reader.close()
        cache.close()  # the last connection folds the WAL into the database
        closed = disk_mib(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"request cache store: {args.entries:,} entries of {size} bytes of JSON each")
    print(f"put: {args.entries / put_s:,.0f} puts/s ({put_s / args.entries * 1e6:.1f} µs per put,"
          f" {put_cpu_s / args.entries * 1e6:.1f} µs of it CPU; one transaction each)")  # fmt: skip
    for name, times in (("hit", hit), ("miss", miss)):
        print(f"lookup {name}: median {statistics.median(times):.1f} µs, "
              f"p99 {_p(times, 0.99):.1f} µs ({len(times):,} lookups)")  # fmt: skip
    print(f"disk while open: db {open_disk['db']:.1f} MiB + wal {open_disk['wal']:.1f} MiB + "
          f"shm {open_disk['shm']:.1f} MiB; after close: {sum(closed.values()):.1f} MiB "
          f"({sum(closed.values()) * 2**20 / args.entries:.0f} bytes per entry)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="timed hits, and misses")
    parser.add_argument("--progress", type=int, default=0, help="print every N puts (0: never)")
    parser.add_argument("--dir", default=None, help="where the store is made (default: TMPDIR)")
    main(parser.parse_args())
