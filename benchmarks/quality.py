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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.humaneval import Problem, build_rows, load_problems
from flows.data.output_reader import RecordReader
from flows.data.records import Candidate, Draft, Trajectory
from flows.eval.compare import paired_bootstrap
from flows.loop.select import select_draft

__all__ = ["Figures", "figures", "main", "subset"]

HIDDEN = "hidden_test_pass_rate"
VISIBLE = "test_pass_rate"
ANCHORS = {  # HumanEval pass@1 (%), Qwen2.5-Coder technical report, arXiv 2409.12186
    "qwen2.5-coder-0.5b-instruct": 61.6,
    "qwen2.5-coder-1.5b-instruct": 70.7,
}


def _passes(draft: Draft | Candidate | None) -> bool:
    """Hidden pass@1 of one draft: every hidden test passed (no draft or no score: a fail)."""
    return draft is not None and draft.rewards.get(HIDDEN) == 1.0


def _beaten(draft: Draft) -> bool:
    """Whether the winner beat candidate 0 outright (no problems against problems, or a higher
    visible pass rate), not only on the tie-break that prefers the later index."""
    first = draft.candidates[0]
    if draft.candidate in (0, None):
        return False
    if draft.usable != first.usable:
        return draft.usable
    return draft.rewards.get(VISIBLE, -1.0) > first.rewards.get(VISIBLE, -1.0)


def _best_of_n(records: list[Trajectory]) -> dict[str, Any] | None:
    """What selection among candidates did: steps that drew candidates, how often the winner
    was not candidate 0, and the oracle (some candidate of the item's first step passes the
    hidden tests) against what selection by visible tests returned at step 1."""
    sampled = [d for r in records for d in r.drafts if d.candidates]
    if not sampled:
        return None
    n = len(records)
    first = [r.drafts[0] if r.drafts else None for r in records]
    oracle = sum(bool(d and any(_passes(c) for c in d.candidates)) for d in first)
    return {
        "steps_with_candidates": len(sampled),
        "candidates_drawn": sum(len(d.candidates) for d in sampled),
        "winner_not_candidate_0": sum(d.candidate not in (0, None) for d in sampled),
        "candidate_0_beaten": sum(_beaten(d) for d in sampled),
        "step1_oracle_pass": oracle / n if n else 0.0,
        "step1_candidate_0_pass": sum(
            bool(d and d.candidates and _passes(d.candidates[0])) for d in first
        )
        / n
        if n
        else 0.0,
    }


def _at(record: Trajectory, step: int) -> Draft | None:
    """The item's latest draft at ``step`` (an item that stopped earlier keeps its last)."""
    drafts = [d for d in record.drafts if d.step <= step]
    return drafts[-1] if drafts else None


def _output(record: Trajectory) -> Draft | None:
    if record.status != "ok" or record.selected_step is None:
        return None
    return next((d for d in record.drafts if d.step == record.selected_step), None)


@dataclass
class Figures:
    """What the benchmark prints and writes with ``--json``."""

    n: int
    failed: int
    steps: list[dict[str, Any]]
    selections: dict[str, float]
    rescues: int
    regressions_output: int
    regressions_last: int
    gain: dict[str, float]
    stop_reasons: dict[str, int]
    no_visible_tests: int
    requests_per_item: float = 0.0
    best_of_n: dict[str, Any] | None = None  # when a step drew candidates

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


def figures(
    records: list[Trajectory], steps: int, no_visible: int, seed: int = 0, resamples: int = 10_000
) -> Figures:
    """The figures over ``records`` (every item once; a failed one counts as a fail)."""
    n = len(records)
    rows = []
    for step in range(1, steps + 1):
        at = [_at(r, step) for r in records]
        tokens = [sum(d.total_usage.tokens for d in r.drafts if d.step <= step) for r in records]
        ran = [d for r in records for d in r.drafts if d.step == step]
        rows.append(
            {
                "step": step,
                "pass@1": sum(map(_passes, at)) / n if n else 0.0,
                "running": len(ran),
                "carried": sum(1 for r in records if r.drafts and r.drafts[-1].step < step),
                "tokens_per_item": sum(tokens) / n if n else 0.0,
                "latency_s": sum(d.latency_s for d in ran) / len(ran) if ran else 0.0,
            }
        )
    chosen = {
        "last": [select_draft(r.drafts, "last", VISIBLE) for r in records],
        "best": [select_draft(r.drafts, "best", VISIBLE) for r in records],
        "output": [_output(r) for r in records],
    }
    selections = {k: sum(map(_passes, v)) / n if n else 0.0 for k, v in chosen.items()}
    first = [_passes(_at(r, 1)) for r in records]
    out = [_passes(d) for d in chosen["output"]]
    last = [_passes(r.drafts[-1] if r.drafts else None) for r in records]
    ever = [any(_passes(d) for d in r.drafts) for r in records]
    gain: dict[str, float] = {}
    if n:
        interval = paired_bootstrap(
            [float(o) - float(f) for o, f in zip(out, first, strict=True)],
            resamples=resamples,
            seed=seed,
        )
        gain = {"mean": interval.mean_diff, "low": interval.low, "high": interval.high}
    reasons: dict[str, int] = {}
    for r in records:
        reasons[str(r.stop_reason)] = reasons.get(str(r.stop_reason), 0) + 1
    return Figures(
        n=n,
        failed=sum(r.status != "ok" for r in records),
        steps=rows,
        selections=selections,
        rescues=sum(not f and o for f, o in zip(first, out, strict=True)),
        regressions_output=sum(e and not o for e, o in zip(ever, out, strict=True)),
        regressions_last=sum(e and not la for e, la in zip(ever, last, strict=True)),
        gain=gain,
        stop_reasons=reasons,
        no_visible_tests=no_visible,
        requests_per_item=sum(len(d.requests()) for r in records for d in r.drafts) / n
        if n
        else 0.0,
        best_of_n=_best_of_n(records),
    )


def _print(fig: Figures, model: str, wall_s: float | None) -> None:
    print(
        f"\nn = {fig.n} items ({fig.failed} failed: counted as hidden failures everywhere); "
        f"{fig.no_visible_tests} without visible tests (no test feedback in fix steps)"
    )
    print(
        f"{'':8} {'hidden pass@1':>13} {'running':>8} {'carried':>8} "
        f"{'tokens/item (cum.)':>18} {'latency/draft':>13}"
    )
    for row in fig.steps:
        print(
            f"step {row['step']:<3} {row['pass@1']:>13.3f} {row['running']:>8} "
            f"{row['carried']:>8} {row['tokens_per_item']:>18,.0f} {row['latency_s']:>12.2f}s"
        )
    print("(an item that stopped before step t carries its last draft forward: 'carried')")
    for name, value in fig.selections.items():
        print(f"{name:8} {value:>13.3f}")
    print(
        f"rescues (step 1 fails, output passes): {fig.rescues}; regressions (passed at some "
        f"step, fails in the output): {fig.regressions_output}, at the last step: "
        f"{fig.regressions_last}"
    )
    if fig.gain:
        print(
            f"gain, output - step 1: {fig.gain['mean']:+.3f} (95% paired bootstrap interval "
            f"{fig.gain['low']:+.3f} .. {fig.gain['high']:+.3f}, 10,000 resamples)"
        )
    print("stop reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(fig.stop_reasons.items())))
    print(f"requests per item: {fig.requests_per_item:.2f} (candidates, fixes, repeats)")
    if fig.best_of_n:
        b = fig.best_of_n
        print(
            f"best-of-N: {b['candidates_drawn']} candidates in {b['steps_with_candidates']} "
            f"steps, the winner not candidate 0 in {b['winner_not_candidate_0']} (beating it "
            f"outright in {b['candidate_0_beaten']}, the rest ties to the later index); step 1: "
            f"candidate 0 alone {b['step1_candidate_0_pass']:.3f}, some candidate passes the "
            f"hidden tests (oracle) {b['step1_oracle_pass']:.3f}"
        )
    if wall_s is not None:
        print(f"wall time of this invocation's run: {wall_s:.1f} s (a resumed run: only its part)")
    anchor = ANCHORS.get(model)
    step1 = fig.steps[0]["pass@1"] * 100 if fig.steps else 0.0
    if anchor is not None:
        print(
            f"anchor: {model} HumanEval pass@1 reported {anchor} (Qwen2.5-Coder technical "
            f"report, arXiv 2409.12186; full precision, its own prompt) vs step 1 here "
            f"{step1:.1f} (q4 GGUF, this prompt, n = {fig.n})"
        )
    else:
        print(
            f"anchor: Qwen2.5-Coder-0.5B-Instruct 61.6, 1.5B-Instruct 70.7 reported (arXiv "
            f"2409.12186) vs step 1 here {step1:.1f} ({model})"
        )


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
    _print(fig, model, wall)
    if args.json:
        payload = {"command": command, "model": model, "missing": missing, **fig.as_json()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
