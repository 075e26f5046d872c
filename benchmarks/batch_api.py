"""Online against Batch API refinement of the same data: HTTP calls, tokens, price and overhead.

Against the fake server (``python -m tests.fake_openai``, each online request answered after
``--latency-ms``; each batch line at once), with a real Prefect server, the same ``refine run``
of ``--items`` summarize rows in ``--steps`` steps goes once online and once with
``--batch-api``, alternating, ``--repeat`` times. Prints per mode the median wall time, the HTTP
calls, the tokens, the tokens billed at batch price, and the price of the run relative to online
at OpenAI's batch discount of 50 % (https://platform.openai.com/docs/guides/batch). The fake
answers a batch in seconds where a provider takes minutes to hours: the wall time here is
refine's own overhead per step (upload, polls, download), not what a real batch takes.

    python -m benchmarks.batch_api --items 1000 --steps 3 --repeat 3
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

from tests.cli_helpers import REFINE, fake_server_process
from tests.prefect_server import PrefectServer

BATCH_DISCOUNT = 0.5


def write_dataset(path: Path, items: int) -> Path:
    rows = (
        {"id": f"r{i:05d}", "text": f"Report {i}: the river rose {i % 7} m after the storm."}
        for i in range(items)
    )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run(
    mode: str, url: str, data: Path, work: Path, env: dict[str, str], args: Any
) -> dict[str, Any]:
    out = work / f"{mode}-{time.monotonic_ns()}.jsonl"
    config = work / "batch.toml"
    config.write_text("[batch]\npoll_initial_s = 0.2\npoll_max_s = 1.0\n")
    command = [
        REFINE, "run", str(data), "-o", str(out), "--task", "summarize", "--steps",
        str(args.steps), "--base-url", url, "--model", "m", "--no-cache", "--quiet",
        "--concurrency", str(args.concurrency), "--config", str(config),
        *(["--batch-api"] if mode == "batch" else []),
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    tokens = batch_tokens = requests = 0
    for line in out.read_text(encoding="utf-8").splitlines():
        for draft in json.loads(line)["drafts"]:
            usage = draft["usage"]
            spent = usage["prompt_tokens"] + usage["completion_tokens"]
            tokens += spent
            batch_tokens += spent if usage.get("batch") else 0
            requests += 1
    return {"wall_s": wall, "tokens": tokens, "batch_tokens": batch_tokens, "requests": requests}


def http_calls(url: str) -> int:
    from tests.fake_openai import FakeOpenAIControl

    control = FakeOpenAIControl(url)
    calls = sum(e.batch_id is None and e.path.startswith("/v1/") for e in control.requests)
    control.clear_log()
    return calls


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-batch-api-"))
    prefect = PrefectServer(work / "prefect")
    prefect.start()
    env = {**os.environ, **prefect.client_env(), "REFINE_CACHE_DIR": str(work / "cache")}
    results: dict[str, list[dict[str, Any]]] = {"online": [], "batch": []}
    try:
        with fake_server_process("--latency-ms", str(args.latency_ms)) as url:
            data = write_dataset(work / "data.jsonl", args.items)
            for round_ in range(args.repeat):
                order = ["online", "batch"] if round_ % 2 == 0 else ["batch", "online"]
                for mode in order:
                    http_calls(url)  # clear the log
                    figures = run(mode, url, data, work, env, args)
                    figures["http_calls"] = http_calls(url)
                    results[mode].append(figures)
    finally:
        prefect.stop()
    print(f"{args.items} items x {args.steps} steps, {args.repeat} round(s), online latency "
          f"{args.latency_ms:g} ms, concurrency {args.concurrency}")  # fmt: skip
    online_price = statistics.median(r["tokens"] for r in results["online"])
    for mode, rows in results.items():
        wall = statistics.median(r["wall_s"] for r in rows)
        tokens = statistics.median(r["tokens"] for r in rows)
        at_batch = statistics.median(r["batch_tokens"] for r in rows)
        price = (tokens - at_batch) + BATCH_DISCOUNT * at_batch
        each = ", ".join(f"{r['wall_s']:.2f}" for r in rows)
        print(
            f"{mode:>6}: wall median {wall:.2f} s ({each}), "
            f"HTTP calls {statistics.median(r['http_calls'] for r in rows):.0f}, "
            f"requests {rows[0]['requests']}, tokens {tokens:.0f} ({at_batch:.0f} at batch "
            f"price), price vs online {price / online_price:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    main(parser.parse_args())
