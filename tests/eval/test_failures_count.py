"""A failed item counts, as a failure, in every figure of ``refine eval`` (issue 14).

A rescoring once showed 0.941 "over 34 items" where the truth over 60 items was 0.533: the
``best``/``last``/``output`` rows left out the items with no usable draft. These tests read
hand-written records through the real reader and check each figure counts them.
"""

from __future__ import annotations

from pathlib import Path

from flows.data.records import Draft, Trajectory
from flows.eval.compare import compare_runs
from flows.eval.curves import read_curves
from flows.eval.stats import evaluate


def _write(path: Path, records: list[Trajectory]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


def _records(good: float) -> list[Trajectory]:
    ok = Trajectory(
        id="ok",
        status="ok",
        output="a fine answer",
        drafts=[Draft(step=1, text="a fine answer", rewards={"rouge_l": good, "loglik": -0.5})],
        selected_step=1,
        reward="rouge_l",
    )
    failed = Trajectory(  # every draft empty: no reward computed, nothing returned
        id="failed",
        status="failed",
        drafts=[
            Draft(step=1, text="", problems=["the answer is empty"]),
            Draft(step=2, text="", problems=["the answer is empty"]),
        ],
        error="no usable draft",
        reward="rouge_l",
    )
    unscorable = Trajectory(  # no reference: the reward does not apply to this item at all
        id="no-reference",
        status="ok",
        output="text",
        drafts=[
            Draft(
                step=1,
                text="text",
                reward_notes=["reward rouge_l unavailable: the item has no reference"],
            )
        ],
        selected_step=1,
        reward="rouge_l",
    )
    return [ok, failed, unscorable]


def test_every_selection_and_step_counts_a_failed_item_at_the_floor(tmp_path: Path) -> None:
    report = evaluate(read_curves(_write(tmp_path / "out.jsonl", _records(0.8))), "out.jsonl")
    for row in report.selections:
        rouge = row.rewards["rouge_l"]
        assert (rouge.n, rouge.mean) == (2, 0.4), row.selection  # ok 0.8 + failed 0.0
        assert row.items == 2  # the no-reference item has an answer; the failed one has none
        # loglik has no floor: the failed item is left out, not invented
        assert row.rewards["loglik"].n == 1
    for step in report.steps:
        assert (step.rewards["rouge_l"].n, step.rewards["rouge_l"].mean) == (2, 0.4)


def test_compare_pairs_a_failed_item_as_a_failure(tmp_path: Path) -> None:
    a = read_curves(_write(tmp_path / "a.jsonl", _records(0.8)))
    b = read_curves(_write(tmp_path / "b.jsonl", _records(0.6)))
    report = compare_runs(a, b, ("a", "b"), reward="rouge_l")
    assert report.final_pairs == 2
