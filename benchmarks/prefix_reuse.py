"""Prompt-prefix reuse on the embedded model: the same refinement run with reuse on and off.

For each round, in alternating order, the model is started the way ``refine run`` starts it,
once with reuse on (each slot's prompt cache, ``[local_model] prompt_cache_mib``, and routing by
prefix, ``slot_affinity``) and once with both off, and the same ``refine run`` (default
``examples/summarize.jsonl``, 3 steps, temperature 0, no request cache) goes against it with a
real Prefect server. Prints each round's wall time, the median ratio on/off, and per step the
prompt tokens, the cached prompt tokens the slots reported (``usage.cached_tokens``) and their
share, and whether the two modes returned the same text for every item.

Reuse "off" still keeps what llama-cpp-python keeps by itself: the prefix a prompt shares with
the previous prompt the same slot served.

    python -m benchmarks.prefix_reuse --repeat 2

With ``--base-url URL --model NAME`` it runs once against a server you started (vLLM with
``--enable-prefix-caching --enable-prompt-tokens-details``, llama.cpp's ``llama-server``, a
hosted API) and prints the per-step table only: reuse there is the server's setting, not ours.

    python -m benchmarks.prefix_reuse --base-url http://127.0.0.1:8011/v1 --model NAME --items 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from flows.config.local import LocalModelConfig
from flows.config.run import RunConfig
from flows.local.endpoint import start_local_model
from flows.local.model import resolve_model
from tests.cli_helpers import REFINE
from tests.prefect_server import PrefectServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODES = {"reuse on": (LocalModelConfig().prompt_cache_mib, True), "reuse off": (0, False)}


def run_once(
    url: str, alias: str, args: argparse.Namespace, env: dict[str, str], out: Path
) -> float:
    """One ``refine run`` against the served model; its wall time in seconds.

    The request deadline is an hour: the run is timed, not held to the default 120 s that a
    busy 2-core machine can exceed while requests queue for a slot.
    """
    config = out.with_suffix(".toml")
    config.write_text("[retry]\ncall_deadline_s = 3600\nmax_elapsed_s = 3600\n")
    command = [
        REFINE, "run", str(args.data), "--task", args.task, "--steps", str(args.steps),
        "--base-url", url, "--model", alias, "--temperature", "0", "--no-cache", "--quiet",
        "--max-tokens", str(args.max_tokens), "--concurrency", str(args.concurrency),
        "-o", str(out), "--config", str(config),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: some item failed, which the figures still count
        raise RuntimeError(f"refine run failed:\n{done.stderr[-3000:]}")
    return wall


def step_figures(records: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    """Per step (1-based): requests, prompt tokens and cached prompt tokens of the drafts."""
    steps: dict[int, dict[str, int]] = {}
    for record in records:
        for draft in record.get("drafts", []):
            row = steps.setdefault(draft["step"], {"requests": 0, "prompt": 0, "cached": 0})
            row["requests"] += 1
            row["prompt"] += draft["usage"]["prompt_tokens"]
            row["cached"] += draft["usage"].get("cached_tokens", 0)
    return steps


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_items(args: argparse.Namespace, work: Path) -> None:
    """Cut ``args.data`` to its first ``args.items`` rows (all when None)."""
    if args.items is None:
        return
    rows = args.data.read_text().splitlines(keepends=True)[: args.items]
    args.data = work / f"first-{args.items}.jsonl"
    args.data.write_text("".join(rows))


def external(args: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    """One run against ``--base-url``: the per-step table of cached prompt tokens."""
    out = work / "external.jsonl"
    wall = run_once(args.base_url, args.model, args, env, out)
    records = read(out)
    print(f"\n{args.base_url} ({args.model}): {args.task}, {len(records)} items x "
          f"{args.steps} steps, {args.concurrency} in flight, max_tokens {args.max_tokens}: "
          f"{wall:.1f} s")  # fmt: skip
    print_steps({"server": records})


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-prefix-reuse-"))
    first_items(args, work)
    prefect = PrefectServer(work / "prefect")
    prefect.start()
    env = {**os.environ, **prefect.client_env()}
    if args.base_url:
        try:
            external(args, work, env)
        finally:
            prefect.stop()
        return
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    outputs: dict[str, Path] = {}
    try:
        for round_ in range(args.repeat):
            order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
            for mode in order:
                cache_mib, affinity = MODES[mode]
                local = LocalModelConfig(
                    model=args.model, parallel=args.slots,
                    prompt_cache_mib=cache_mib, slot_affinity=affinity,
                )  # fmt: skip
                served = resolve_model(local)
                out = work / f"{mode.replace(' ', '-')}-{round_}.jsonl"
                with start_local_model(RunConfig(local_model=served.config), served.path) as url:
                    wall = run_once(url, served.alias, args, env, out)
                walls[mode].append(wall)
                outputs[mode] = out
                print(f"round {round_ + 1} {mode}: {wall:.1f} s", flush=True)
    finally:
        prefect.stop()
    report(args, walls, {mode: read(path) for mode, path in outputs.items()})


def print_steps(records: dict[str, list[dict]]) -> None:
    """The per-step table: requests, prompt tokens, cached prompt tokens and their share."""
    print("\n| mode | step | requests | prompt tokens | cached | cached share |")
    print("|---|---|---|---|---|---|")
    for mode, rows in records.items():
        for step, row in sorted(step_figures(rows).items()):
            share = row["cached"] / row["prompt"] if row["prompt"] else 0.0
            print(f"| {mode} | {step} | {row['requests']} | {row['prompt']:,} | "
                  f"{row['cached']:,} | {share:.0%} |")  # fmt: skip


def report(
    args: argparse.Namespace, walls: dict[str, list[float]], records: dict[str, list[dict]]
) -> None:
    on, off = (statistics.median(walls[m]) for m in MODES)
    print(f"\n{args.task}, {len(records['reuse on'])} items x {args.steps} steps, "
          f"{args.slots} slots, {args.concurrency} in flight, max_tokens {args.max_tokens}, "
          f"temperature 0; medians of {args.repeat} rounds")  # fmt: skip
    print(f"wall s: reuse on {on:.1f}, reuse off {off:.1f}; on/off {on / off:.2f} "
          f"({(1 - on / off) * 100:.0f}% less time)")  # fmt: skip
    print_steps(records)
    texts = {mode: {r["id"]: r.get("output") for r in rows} for mode, rows in records.items()}
    failed = {m: sum(r["status"] == "failed" for r in rows) for m, rows in records.items()}
    print(f"\nfailed items (last round): {failed}")
    same = sum(texts["reuse on"].get(i) == t for i, t in texts["reuse off"].items())
    print(f"\nreturned text identical in both modes: {same} of {len(texts['reuse off'])} items "
          "(last round of each)")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=EXAMPLES / "summarize.jsonl")
    parser.add_argument("--task", default="summarize")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--model",
        default=None,
        help="catalogue name or GGUF (default model); with --base-url the served model's name",
    )
    parser.add_argument("--base-url", default=None, help="a server you started: one run")
    parser.add_argument("--items", type=int, default=None, help="the first N rows of --data")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--max-tokens", type=int, default=512, help="the local model's default: answers end"
    )
    parser.add_argument("--repeat", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
