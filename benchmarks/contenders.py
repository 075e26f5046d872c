"""One contender of the comparison, run in its own process: ours, the plain floor, or DSPy.

Each runs the same workload (N items x T dependent calls, same prompt growth, same concurrency)
against an OpenAI-compatible base URL and prints one JSON line: wall seconds, requests sent,
CPU seconds and peak RSS of this process alone. A process per run keeps imports, caches and
memory of one contender from showing up in another's figures.

    python -m benchmarks.contenders flow --base-url URL --data items.jsonl --steps 3 ...
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import resource
import time
from pathlib import Path
from typing import Any

PROMPT = "Give three tips for task {i}."


def write_dataset(path: Path, items: int) -> Path:
    """``items`` generic rows, the same for every contender."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(items):
            fh.write(json.dumps({"id": str(i), "input": PROMPT.format(i=i)}) + "\n")
    return path


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_flow(args: argparse.Namespace) -> int:
    """Ours: ``refine_batch`` with default settings (or the given chunk size)."""
    from flows.batch import refine_batch
    from flows.config.run import EndpointConfig, RunConfig

    config = RunConfig(
        task="generic",
        steps=args.steps,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        chunks_in_flight=args.chunks_in_flight,
        use_cache=args.cache_dir is not None,
        cache_dir=args.cache_dir or Path("unused-cache"),
        endpoint=EndpointConfig(base_url=args.base_url, model=args.model, **_sampling(args)),
        validators=[],
        rewards=[],
    )
    summary = await refine_batch(args.data, args.out, config)
    return summary.http_attempts


async def run_asyncio(args: argparse.Namespace) -> int:
    """The floor: T dependent calls per item, one semaphore, no orchestration, no cache.

    It renders the same packaged ``generic`` templates our flow sends (system, ``initial`` at
    step 1, ``refine`` with the last two drafts after), so both send the same prompts: on a real
    model the prompt's length is much of a request's cost.
    """
    import openai

    from prompts import build_environment, build_variables

    templates = build_environment()
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="no-key", max_retries=0)
    limit = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> None:
        drafts: list[str] = []
        for step in range(1, args.steps + 1):
            variables = build_variables(
                "generic", step, args.steps, {"input": PROMPT.format(i=i)}, drafts=drafts[-2:]
            )
            async with limit:
                response = await client.chat.completions.create(
                    model=args.model,
                    messages=templates.render_messages("generic", step, variables),  # type: ignore[arg-type]
                    **_sampling(args),
                )
            drafts.append((response.choices[0].message.content or "").strip())

    await asyncio.gather(*(one(i) for i in range(args.items)))
    await client.close()
    return args.items * args.steps


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields every contender sends alike."""
    sampling: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    if args.stop:
        sampling["stop"] = args.stop
    return sampling


def run_dspy(args: argparse.Namespace) -> int:
    """DSPy: a module calling one Predict T times on the previous draft, batched on threads."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM(
        f"openai/{args.model}",
        api_base=args.base_url,
        api_key="no-key",
        cache=False,
        num_retries=0,
        **_sampling(args),
    )
    dspy.configure(lm=lm)

    class Step(dspy.Signature):  # type: ignore[misc]
        """Improve the previous draft of the answer to the task."""

        task: str = dspy.InputField()
        previous: str = dspy.InputField()
        draft: str = dspy.OutputField()

    class Refine(dspy.Module):  # type: ignore[misc]
        def __init__(self, steps: int) -> None:
            super().__init__()
            self.steps, self.step = steps, dspy.Predict(Step)

        def forward(self, task: str) -> Any:
            draft = ""
            for _ in range(self.steps):
                draft = self.step(task=task, previous=draft).draft
            return dspy.Prediction(draft=draft)

    examples = [
        dspy.Example(task=PROMPT.format(i=i)).with_inputs("task") for i in range(args.items)
    ]
    results = Refine(args.steps).batch(
        examples, num_threads=args.concurrency, disable_progress_bar=True, max_errors=args.items
    )
    failed = sum(1 for r in results if r is None)
    if failed:
        raise RuntimeError(f"DSPy failed {failed} of {args.items} items")
    return args.items * args.steps


_IMPORTS = {
    # Prefect loads its engines, its flow visualizer (graphviz) and FastAPI's encoder (for the
    # flow run's parameters) on a flow's first call: about 1 s of library loading inside the
    # timed region when they were left out (issue 17), which the floor never pays.
    "flow": (
        "flows.batch",
        "flows.config.run",
        "flows.ops.lifecycle",
        "prefect.flow_engine",
        "prefect.task_engine",
        "prefect.utilities.visualization",
        "prefect.artifacts",
        "fastapi.encoders",
    ),
    "asyncio": ("openai", "prompts"),
    "dspy": ("dspy",),
}


def main(args: argparse.Namespace) -> None:
    """Run one contender and print its figures as one JSON line.

    Each contender's libraries are imported before the clock starts: the figures compare the
    cost of running the workload, not of loading Prefect, the SDK or DSPy (about a second each).
    """
    for module in _IMPORTS[args.name]:
        importlib.import_module(module)
    if args.name == "flow":  # Prefect: quiet, and its events sent before the clock stops
        from prefect.settings import PREFECT_LOGGING_LEVEL, temporary_settings

        from flows.ops.lifecycle import drain_prefect_workers

        with temporary_settings({PREFECT_LOGGING_LEVEL: "WARNING"}):
            started, cpu = time.perf_counter(), _cpu_seconds()
            requests = asyncio.run(run_flow(args))
            wall = time.perf_counter() - started
            drain_prefect_workers()
    else:
        started, cpu = time.perf_counter(), _cpu_seconds()
        requests = asyncio.run(run_asyncio(args)) if args.name == "asyncio" else run_dspy(args)
        wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "name": args.name,
                "wall_s": wall,
                "requests": requests,
                "cpu_s": _cpu_seconds() - cpu,
                "peak_rss_mib": _peak_rss_mib(),
            }
        ),
        flush=True,
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["flow", "asyncio", "dspy"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench-out.jsonl"))
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--chunks-in-flight", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--model", default="m")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--stop", nargs="*", default=[])
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
