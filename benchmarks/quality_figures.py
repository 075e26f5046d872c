"""What ``python -m benchmarks.quality`` computes and prints from a run's records: hidden
pass@1 per step and per selection, rescues and regressions, the paired bootstrap on the gain,
and, for best-of-N runs, what selection among the candidates did. Split from
:mod:`benchmarks.quality`, which runs the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.data.records import Candidate, Draft, Trajectory
from flows.eval.compare import paired_bootstrap
from flows.loop.select import select_draft

__all__ = ["ANCHORS", "HIDDEN", "VISIBLE", "Figures", "figures", "print_figures"]

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


def print_figures(fig: Figures, model: str, wall_s: float | None) -> None:
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
