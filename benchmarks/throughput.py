"""Requests/s of ``refine_batch`` against the fake server, side by side with plain asyncio.

Starts the project's fake OpenAI server in its own process (fixed latency per request) and a
real Prefect server, then alternates, ``--repeat`` times: our flow over N items x T steps, and
the floor (a plain asyncio loop with the openai SDK under the same concurrency, no
orchestration). Then a fully cached re-run of the flow. Prints medians and ratios.

    python -m benchmarks.throughput --items 2000 --steps 3 --latency-ms 50 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import openai

from flows.batch import refine_batch
from flows.lifecycle import drain_prefect_workers
from flows.settings import EndpointConfig, RunConfig
from tests.cli_helpers import fake_server_process
from tests.prefect_server import PrefectServer


def write_dataset(path: Path, items: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(items):
            fh.write(json.dumps({"id": str(i), "input": f"Give three tips for task {i}."}) + "\n")
    return path


async def plain_asyncio(base_url: str, items: int, steps: int, concurrency: int) -> int:
    """The floor: T dependent calls per item, one semaphore, no orchestration, no cache."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="no-key", max_retries=0)
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        draft = ""
        for step in range(1, steps + 1):
            prompt = f"Give three tips for task {i}.\n\nStep {step}. Previous draft:\n{draft}"
            async with limit:
                response = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": prompt}], max_tokens=512
                )
            draft = response.choices[0].message.content or ""

    await asyncio.gather(*(one(i) for i in range(items)))
    await client.close()
    return items * steps


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(action: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    requests = await action()
    return time.perf_counter() - wall, cpu_seconds() - cpu, requests


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-bench-"))
    data = write_dataset(work / "data.jsonl", args.items)
    prefect = PrefectServer(work / "prefect")
    prefect.start()
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_LEVEL, temporary_settings

    try:
        with (
            fake_server_process("--latency-ms", str(args.latency_ms), "--max-log", "0") as url,
            temporary_settings(
                {PREFECT_API_URL: prefect.api_url, PREFECT_LOGGING_LEVEL: "WARNING"}
            ),
        ):
            results: dict[str, list[tuple[float, float, int]]] = {"flow": [], "asyncio": []}
            for rep in range(args.repeat):
                config = RunConfig(
                    task="generic",
                    steps=args.steps,
                    concurrency=args.concurrency,
                    chunk_size=args.chunk_size,
                    use_cache=False,
                    endpoint=EndpointConfig(base_url=url, model="m"),
                )

                async def ours(config: RunConfig = config, rep: int = rep) -> int:
                    summary = await refine_batch(data, work / f"out-{rep}.jsonl", config)
                    return summary.http_attempts

                results["flow"].append(await timed(ours))
                results["asyncio"].append(
                    await timed(
                        lambda: plain_asyncio(url, args.items, args.steps, args.concurrency)
                    )
                )
            cached_config = config.model_copy(
                update={"use_cache": True, "cache_dir": work / "cache"}
            )

            async def cached_run(name: str) -> int:
                summary = await refine_batch(data, work / f"{name}.jsonl", cached_config)
                return summary.http_attempts

            first = await timed(lambda: cached_run("cache-fill"))
            rerun = await timed(lambda: cached_run("cache-rerun"))
    finally:
        drain_prefect_workers()
        prefect.stop()

    print(
        f"workload: {args.items} items x {args.steps} steps, latency {args.latency_ms} ms, "
        f"concurrency {args.concurrency}, chunk size {args.chunk_size or 'auto'}, "
        f"repeat {args.repeat}"
    )
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        requests = runs[0][2]
        medians[name] = (wall, cpu, requests)
        print(
            f"{name:8s} wall {wall:7.2f} s  {requests / wall:8.1f} req/s  "
            f"{args.items / wall:7.1f} items/s  cpu {cpu:6.2f} s  "
            f"{1000 * cpu / requests:6.2f} ms cpu/req  (walls: {[round(r[0], 2) for r in runs]})"
        )
    ratio = medians["asyncio"][0] / medians["flow"][0]
    cpu_ratio = (medians["flow"][1] / medians["flow"][2]) / (
        medians["asyncio"][1] / medians["asyncio"][2]
    )
    print(f"throughput flow/asyncio: {ratio:.2f}x   cpu per request flow/asyncio: {cpu_ratio:.2f}x")
    print(
        f"cached re-run: {rerun[0]:.2f} s with {rerun[2]} requests, "
        f"vs {first[0]:.2f} s for the run that filled the cache ({rerun[0] / first[0]:.1%})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the flow's own")
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
