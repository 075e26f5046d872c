"""Kill ``refine run`` with SIGKILL halfway, resume it, and count what was written and re-sent.

Starts the fake OpenAI server (its own process, fixed latency) and a real Prefect server, runs
``refine run`` over N items x T steps, kills its process group once half the records are
written, runs the same command again, then prints the records before and after, the ids seen
more than once, and how many requests the server answered twice (only requests that were on
the wire at the kill can be: answers already received come from the request cache).

    python -m benchmarks.kill_resume --items 200 --steps 3 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.cli_helpers import (
    REFINE,
    cli_env,
    fake_server_process,
    kill_when_written,
    read_records,
    run_refine,
)
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="refine-kill-"))
    data = work / "data.jsonl"
    rows = (
        json.dumps({"id": f"i{i}", "text": f"Report {i}: pump {i} repaired."})
        for i in range(args.items)
    )
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = work / "out.jsonl"
    prefect = PrefectServer(work / "prefect")
    prefect.start()
    try:
        with fake_server_process("--latency-ms", str(args.latency_ms)) as url:
            control = FakeOpenAIControl(url)
            env = cli_env(prefect, work)
            command = [REFINE, "run", str(data), "--task", "summarize", "--steps", str(args.steps)]
            command += ["-o", str(out), "--base-url", url, "--model", "m"]
            command += ["--concurrency", str(args.concurrency)]
            kill_when_written(command, env, out, records=args.items // 2)
            before = out.read_bytes().count(b"\n")
            sent_before = len(control.chat_requests())
            started = time.perf_counter()
            resumed = run_refine(command[1:], env)
            resume_s = time.perf_counter() - started
            records = read_records(out)
            log = control.chat_requests()
            answered = Counter(json.dumps(e.body, sort_keys=True) for e in log if e.status == 200)
    finally:
        prefect.stop()
    ids = Counter(r["id"] for r in records)
    print(f"{args.items} items x {args.steps} steps, concurrency {args.concurrency}")
    print(
        f"records at the kill: {before}; after the resume: {len(records)} "
        f"({sum(n > 1 for n in ids.values())} ids written twice); "
        f"resume exit code {resumed.returncode}"
    )
    print(
        f"requests seen by the server: {sent_before} before the resume, "
        f"{len(log)} in all, for {len(answered)} distinct requests"
    )
    print(
        f"requests answered twice: {sum(n > 1 for n in answered.values())} "
        f"(at most the {args.concurrency} in flight at the kill); resume took {resume_s:.1f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    main(parser.parse_args())
