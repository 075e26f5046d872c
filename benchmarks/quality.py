"""Does refinement buy correctness? HumanEval with honest feedback and hidden tests.

Writes HumanEval as a codegen dataset (:mod:`benchmarks.humaneval`: visible tests from the
docstrings' examples, HumanEval's own tests hidden in ``reference``), runs

    refine run DATA --task codegen --steps T --reward test_pass_rate
        --reward hidden_test_pass_rate --temperature 0 ...

on the embedded local model (or ``--base-url URL --model M``), then reads the output and prints
hidden pass@1 per step, for the ``last``/``best`` selections and the returned output, the
tokens per item, rescues and regressions, and a paired bootstrap interval on the gain (output
minus step 1). The model only ever sees the visible tests (in fix steps); the hidden ones only
score. An item with no usable draft counts as a hidden failure in every figure.

    python -m benchmarks.quality --limit 20 --seed 0 --steps 3
    python -m benchmarks.quality --all --base-url http://127.0.0.1:8000/v1 --model M

Re-running the same command resumes: the output under ``--work-dir`` is append-only and the
request cache answers what was already asked.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.humaneval import Problem, build_rows, load_problems
from benchmarks.quality_figures import HIDDEN, VISIBLE, Figures, figures, print_figures
from flows.data.output_reader import RecordReader
from flows.data.records import Trajectory

__all__ = ["Figures", "figures", "main", "subset"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20, help="seeded subset of N problems")
    parser.add_argument("--seed", type=int, default=0, help="picks the subset; seeds bootstrap")
    parser.add_argument("--all", action="store_true", help="all 164 problems")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: local)")
    parser.add_argument("--model", help="the model name at --base-url")
    parser.add_argument("--local-model", help="passed to refine run --local-model")
    parser.add_argument("--work-dir", type=Path, help="default out/quality/<model>-<n>-<steps>")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--concurrency", type=int, help="passed to refine run")
    parser.add_argument("--max-tokens", type=int, default=768, help="per answer")
    parser.add_argument("--temperature", type=float, default=0.0, help="passed to refine run")
    parser.add_argument(
        "--sampling-seed",
        type=int,
        help="passed to refine run as --seed (a best-of-N candidate i gets seed + i, 0 + i "
        "when unset: with 0, a one-sample run's step 1 is candidate 0's request)",
    )
    parser.add_argument(
        "--samples", help="best-of-N: candidates per step, N or one count per step (2,1)"
    )
    parser.add_argument(
        "--stop-sampling-when-valid",
        action="store_true",
        help="draw candidates one at a time until one passes the visible tests",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="the request cache (default: in --work-dir); strategies that share requests "
        "(best of 3, best of 2 + a fix) can share one",
    )
    parser.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="UNSAFE: passed to refine run (and used for the dataset checks)",
    )
    parser.add_argument(
        "--refine", default=str(Path(sys.executable).with_name("refine")), help="the refine program"
    )
    return parser


def subset(problems: list[Problem], limit: int, seed: int) -> list[Problem]:
    """A seeded sample of ``limit`` problems, in HumanEval's order."""
    picked = random.Random(seed).sample(problems, min(limit, len(problems)))
    return sorted(picked, key=lambda p: int(p.task_id.split("/")[1]))


def _model_name(args: argparse.Namespace) -> str:
    if args.base_url:
        return str(args.model or "endpoint")
    if args.local_model:
        return str(args.local_model)
    try:
        from flows.local.catalogue import DEFAULT_MODEL
    except ImportError:
        return "local"
    return DEFAULT_MODEL


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    model = _model_name(args)
    problems = load_problems()
    if not args.all:
        problems = subset(problems, args.limit, args.seed)
    n = len(problems)
    tag = f"{Path(model).name}-{n}-{args.steps}"
    if args.samples:
        tag += f"-s{args.samples.replace(',', '.')}"
        tag += "-early" if args.stop_sampling_when_valid else ""
    if args.temperature:
        tag += f"-t{args.temperature:g}"
    if args.sampling_seed is not None:
        tag += f"-seed{args.sampling_seed}"
    work = args.work_dir or Path("out/quality") / tag
    work.mkdir(parents=True, exist_ok=True)
    data, out = work / "humaneval.jsonl", work / "out.jsonl"
    if not data.exists():  # written once: a resumed run reads the same rows
        rows, found = build_rows(problems, allow_unsandboxed=args.allow_unsandboxed)
        text = "".join(json.dumps(row) + "\n" for row in rows)
        data.with_suffix(".tmp").write_text(text, encoding="utf-8")
        data.with_suffix(".tmp").replace(data)
        kept = sum(len(f.kept) for f in found.values())
        dropped = sum(len(f.dropped) for f in found.values())
        print(
            f"dataset: {n} problems, {sum(bool(f.kept) for f in found.values())} with visible "
            f"tests ({kept} asserts kept, {dropped} docstring asserts dropped: the canonical "
            "solution fails them)"
        )
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    no_visible = sum("tests" not in row for row in rows)
    command = [
        args.refine,
        "run",
        str(data),
        "--task",
        "codegen",
        "--steps",
        str(args.steps),
        "--reward",
        VISIBLE,
        "--reward",
        HIDDEN,
        "--temperature",
        f"{args.temperature:g}",
        "--max-tokens",
        str(args.max_tokens),
        "--output",
        str(out),
        "--cache-dir",
        str(args.cache_dir or work / "cache"),
        "--quiet",
    ]
    if args.samples:
        command += ["--samples", args.samples]
    if args.sampling_seed is not None:
        command += ["--seed", str(args.sampling_seed)]
    if args.stop_sampling_when_valid:
        command.append("--stop-sampling-when-valid")
    if args.base_url:
        command += ["--base-url", args.base_url, "--model", str(args.model or "model")]
    if args.local_model:
        command += ["--local-model", args.local_model]
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    if args.allow_unsandboxed:
        command.append("--allow-unsandboxed")
    print(
        "$ python -m benchmarks.quality " + shlex.join(argv if argv is not None else sys.argv[1:])
    )
    print("$ " + shlex.join(command), flush=True)
    started = time.monotonic()
    result = subprocess.run(command, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    if result.returncode not in (0, 1):  # 1: some items failed, which the figures count
        print(f"refine run exited with {result.returncode}", file=sys.stderr)
        return result.returncode
    records = {r.id: r for _, r in RecordReader(out)}
    missing = [row["id"] for row in rows if row["id"] not in records]
    for item_id in missing:  # never left out: an item without a record is a failure
        records[item_id] = Trajectory(id=item_id, status="failed", error="no record")
    ordered = [records[row["id"]] for row in rows]
    fig = figures(ordered, args.steps, no_visible, seed=args.seed)
    print_figures(fig, model, wall)
    if args.json:
        payload = {"command": command, "model": model, "missing": missing, **fig.as_json()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
