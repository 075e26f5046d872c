"""Throughput of the embedded local model at 1 and at N parallel slots.

Starts the model the way ``refine run`` does (``refine serve-model`` on a free loopback port)
once per slot count, sends the same requests through the openai SDK with two requests in flight
per slot, and prints requests/s and tokens/s, and answer tokens/s per slot (the figure the
catalogue's ``decode_tokens_per_s`` holds). Slot counts alternate over ``--repeat`` rounds so
a noisy neighbour hurts both alike; figures are medians. ``--model`` picks a catalogue model
(``refine models``) or a GGUF file; the default is the default model.

    python -m benchmarks.local_model --slots 1 2 --requests 12 --max-tokens 64 --repeat 3

and, for the per-slot decoding speed the catalogue holds (answers that fill max_tokens):

    python -m benchmarks.local_model --slots 2 --requests 4 --max-tokens 256 --long-answers

With ``--compare-slots N`` it instead runs our flow and the plain asyncio floor (same templates,
same sampling, same requests in flight) against one server with N slots:

    python -m benchmarks.local_model --compare-slots 4 --items 8 --steps 2 --max-tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import openai

from flows.config.local import LocalModelConfig
from flows.config.run import RunConfig
from flows.local.endpoint import start_local_model
from flows.local.model import ServedModel, resolve_model

PROMPTS = [
    "Summarize in one sentence: the council closed Main Street to cars on summer weekends.",
    "Translate into French: the train leaves at seven in the morning.",
    "What is the capital of Italy?",
    "Write a Python function that returns the square of a number.",
    "Give three tips for writing clear emails.",
    "Explain what a hash table is in two sentences.",
]

LONG_PROMPTS = [  # --long-answers: answers that run to max_tokens, so decoding dominates
    "Write a detailed 600-word essay on the history of the printing press.",
    "Write a long Python module implementing a linked list, with docstrings and tests.",
]


async def load(
    base_url: str,
    model: str,
    requests: int,
    in_flight: int,
    max_tokens: int,
    prompts: list[str] = PROMPTS,
) -> dict:
    """Send ``requests`` chat requests, ``in_flight`` at a time; time them and count tokens."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    limit = asyncio.Semaphore(in_flight)
    completion_tokens = prompt_tokens = 0

    async def one(i: int) -> None:
        nonlocal completion_tokens, prompt_tokens
        async with limit:
            answer = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
                max_tokens=max_tokens,
                temperature=0,
            )
        if answer.usage is not None:
            completion_tokens += answer.usage.completion_tokens
            prompt_tokens += answer.usage.prompt_tokens

    await one(0)  # warm-up: the first request pays for page faults in the model file
    completion_tokens = prompt_tokens = 0
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    wall = time.perf_counter() - started
    await client.close()
    return {
        "wall_s": wall,
        "req_s": requests / wall,
        "completion_tok_s": completion_tokens / wall,
        "prompt_tok_s": prompt_tokens / wall,
        "completion_tokens": completion_tokens,
    }


def compare(args: argparse.Namespace) -> None:
    """Our flow against the plain floor on one local model server with ``--compare-slots``."""
    import os
    import tempfile
    from pathlib import Path

    from benchmarks.compare import print_table, run_contender, summarize
    from benchmarks.contenders import write_dataset
    from tests.prefect_server import PrefectServer

    served = _served(args, args.compare_slots)
    path = served.path
    work = Path(tempfile.mkdtemp(prefix="refine-local-compare-"))
    data = write_dataset(work / "data.jsonl", args.items)
    config = RunConfig(local_model=served.config)
    params = argparse.Namespace(
        items=args.items, steps=args.steps, concurrency=2 * args.compare_slots
    )
    stops = served.config.stop_for("prose")
    extra = ("--model", served.alias, "--max-tokens", str(args.max_tokens),
             "--temperature", "0", *(("--stop", *stops) if stops else ()))  # fmt: skip
    prefect = PrefectServer(work / "prefect")
    prefect.start()
    env = {**os.environ, **prefect.client_env()}
    runs: dict[str, list[dict]] = {"flow (default)": [], "asyncio (floor)": []}
    try:
        with start_local_model(config, path) as url:
            for round_ in range(args.repeat):
                order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
                for label in order:
                    name = "flow" if label.startswith("flow") else "asyncio"
                    figures = run_contender(
                        name, url, data, params, env, work, extra=extra, fake_server=False
                    )
                    runs[label].append(figures)
                    print(f"round {round_ + 1} {label}: {figures['wall_s']:.1f} s, "
                          f"{figures['requests']} requests", flush=True)  # fmt: skip
    finally:
        prefect.stop()
    rows = [summarize(label, figures, args.items) for label, figures in runs.items()]
    print(f"\nlocal model, {args.compare_slots} slots, {args.items} items x {args.steps} steps, "
          f"{2 * args.compare_slots} in flight, max_tokens {args.max_tokens}, temperature 0; "
          f"medians of {args.repeat} rounds")  # fmt: skip
    print_table(rows, rows[1], None)


def _served(args: argparse.Namespace, slots: int) -> ServedModel:
    """The model ``--model`` names, served with ``slots`` slots as ``refine run`` would."""
    return resolve_model(LocalModelConfig(model=args.model, parallel=slots))


def main(args: argparse.Namespace) -> None:
    if args.compare_slots:
        compare(args)
        return
    runs: dict[int, list[dict]] = {slots: [] for slots in args.slots}
    for round_ in range(args.repeat):
        for slots in args.slots:
            served = _served(args, slots)
            config = RunConfig(local_model=served.config)
            with start_local_model(config, served.path) as url:
                prompts = LONG_PROMPTS if args.long_answers else PROMPTS
                figures = asyncio.run(
                    load(url, served.alias, args.requests, 2 * slots, args.max_tokens, prompts)
                )
            runs[slots].append(figures)
            print(
                f"round {round_ + 1} slots={slots} threads/slot="
                f"{config.local_model.threads_per_slot()}: {figures['req_s']:.2f} req/s, "
                f"{figures['completion_tok_s']:.1f} completion tok/s "
                f"({figures['completion_tokens']} tokens in {figures['wall_s']:.1f} s)",
                flush=True,
            )
    base = statistics.median(r["req_s"] for r in runs[args.slots[0]])
    print(f"\nmedians over {args.repeat} round(s), {args.requests} requests, "
          f"max_tokens={args.max_tokens}, 2 requests in flight per slot:")  # fmt: skip
    print(f"{'slots':>5} {'req/s':>7} {'compl tok/s':>11} {'per slot':>8} {'prompt tok/s':>12} "
          f"{'vs first':>8}")  # fmt: skip
    for slots, figures in runs.items():
        req_s = statistics.median(r["req_s"] for r in figures)
        tok_s = statistics.median(r["completion_tok_s"] for r in figures)
        prompt_s = statistics.median(r["prompt_tok_s"] for r in figures)
        print(f"{slots:>5} {req_s:>7.2f} {tok_s:>11.1f} {tok_s / slots:>8.1f} {prompt_s:>12.1f} "
              f"{req_s / base:>7.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=None, help="catalogue name or GGUF file")
    parser.add_argument(
        "--long-answers", action="store_true", help="prompts whose answers fill max_tokens"
    )
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--compare-slots", type=int, default=0, help="instead: ours vs the floor at N slots"
    )
    parser.add_argument("--items", type=int, default=8, help="with --compare-slots")
    parser.add_argument("--steps", type=int, default=2, help="with --compare-slots")
    main(parser.parse_args())
