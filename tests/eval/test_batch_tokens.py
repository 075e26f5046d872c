"""``refine eval`` shows what each step cost in tokens billed at a Batch API's price.

Hand-written records go through the real reader: the batch flag is per request
(``usage.batch``), so every request of a step is counted on its own: the draft's, its
critique and judge side requests, a cached answer, and the other best-of-N candidates.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from rich.console import Console

from flows.data.records import Candidate, Draft, SideRequest, Trajectory, Usage
from flows.eval.curves import read_curves
from flows.eval.report import eval_rows, eval_table, write_eval_files
from flows.eval.stats import EvalReport, evaluate

ONLINE_COLUMNS = ["", "running", "best here", "rouge_l", "tokens", "requests", "latency"]


def _usage(prompt: int, completion: int, batch: bool) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, batch=batch)


def _records(batch: bool) -> list[Trajectory]:
    """Two items; with ``batch``, most requests batch-priced and a few sent online."""
    a = Trajectory(
        id="a",
        status="ok",
        output="second",
        drafts=[
            Draft(  # 170 tokens, 160 at the batch price: the judge went online
                step=1,
                text="first",
                usage=_usage(100, 20, batch),
                rewards={"rouge_l": 0.5},
                critique="shorter",
                side_requests=[
                    SideRequest(role="critique", text="shorter", usage=_usage(30, 10, batch)),
                    SideRequest(role="judge", text="5", usage=_usage(5, 5, False)),
                ],
            ),
            Draft(  # 100 tokens, all batch-priced, the step's answer from the cache
                step=2,
                text="second",
                usage=_usage(50, 10, batch),
                cached=True,
                attempts=0,
                rewards={"rouge_l": 0.75},
                side_requests=[
                    SideRequest(role="critique", text="fine", usage=_usage(40, 0, batch))
                ],
            ),
        ],
        stop_reason="max_steps",
        selected_step=2,
        reward="rouge_l",
    )
    b = Trajectory(  # best-of-3 in one step: 55 tokens, 45 at the batch price
        id="b",
        status="ok",
        output="winner",
        drafts=[
            Draft(
                step=1,
                text="winner",
                usage=_usage(10, 10, batch),
                rewards={"rouge_l": 1.0},
                candidates=[
                    Candidate(index=0, text="winner", usage=_usage(10, 10, batch)),
                    Candidate(
                        index=1,
                        text="other",
                        usage=_usage(20, 0, batch),
                        side_requests=[
                            SideRequest(role="judge", text="3", usage=_usage(3, 2, batch))
                        ],
                    ),
                    Candidate(index=2, text="online", usage=_usage(7, 3, False)),
                ],
                candidate=0,
                choice="highest rouge_l",
            )
        ],
        stop_reason="valid",
        selected_step=1,
        reward="rouge_l",
    )
    return [a, b]


def _report(tmp_path: Path, batch: bool) -> EvalReport:
    path = tmp_path / f"{'batch' if batch else 'online'}.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in _records(batch)))
    return evaluate(read_curves(path), path.name)


def _rendered(report: EvalReport) -> str:
    console = Console(record=True, width=240)
    console.print(eval_table(report))
    return " ".join(console.export_text().split())  # the caption wraps at the table's width


def test_each_step_counts_its_batch_priced_requests_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in _records(True)))
    curves = {curve.id: curve for curve in read_curves(path)}
    assert [p.tokens for p in curves["a"].points] == [170, 100]
    assert [p.batch_tokens for p in curves["a"].points] == [160, 100]
    assert [p.tokens for p in curves["b"].points] == [55]
    assert [p.batch_tokens for p in curves["b"].points] == [45]

    report = evaluate(list(curves.values()), path.name)
    assert [s.cum_tokens_mean for s in report.steps] == [112.5, 162.5]
    assert [s.cum_batch_tokens_mean for s in report.steps] == [102.5, 152.5]
    assert {s.selection: s.batch_tokens_mean for s in report.selections} == {
        "best": 152.5,
        "last": 152.5,
        "output": 152.5,
    }


def test_csv_and_artifact_rows_carry_batch_tokens_per_item(tmp_path: Path) -> None:
    report = _report(tmp_path, batch=True)
    rows = eval_rows(report)
    assert [r["batch tokens per item (cum)"] for r in rows] == [102.5, 152.5, 152.5, 152.5, 152.5]
    write_eval_files(report, tmp_path / "eval")
    with (tmp_path / "eval" / "eval.csv").open(encoding="utf-8") as fh:
        written = list(csv.DictReader(fh))
    assert [r["row"] for r in written] == ["step 1", "step 2", "best", "last", "output"]
    assert [float(r["batch tokens per item (cum)"]) for r in written] == [
        102.5,
        152.5,
        152.5,
        152.5,
        152.5,
    ]
    assert EvalReport.model_validate_json((tmp_path / "eval" / "eval.json").read_text()) == report

    online = eval_rows(_report(tmp_path, batch=False))
    assert [r["batch tokens per item (cum)"] for r in online] == [0.0] * 5
    assert [r["tokens per item (cum)"] for r in online] == [112.5, 162.5, 162.5, 162.5, 162.5]


def test_table_shows_batch_tokens_only_for_a_run_that_has_them(tmp_path: Path) -> None:
    batch = _report(tmp_path, batch=True)
    table = eval_table(batch)
    headers = [str(column.header) for column in table.columns]
    assert headers == [*ONLINE_COLUMNS[:5], "batch tokens", *ONLINE_COLUMNS[5:]]
    assert list(table.columns[5].cells) == ["102", "152", "152", "152", "152"]  # 102.5, 152.5
    assert "batch tokens (billed at the batch price)" in _rendered(batch)

    online = _report(tmp_path, batch=False)
    table = eval_table(online)
    assert [str(column.header) for column in table.columns] == ONLINE_COLUMNS
    text = _rendered(online)
    assert "batch" not in text
    assert "; tokens, requests and latency cumulate per item" in text


@pytest.mark.parametrize("batch", [True, False])
def test_batch_tokens_never_exceed_tokens(tmp_path: Path, batch: bool) -> None:
    report = _report(tmp_path, batch)
    for step in report.steps:
        assert 0 <= step.cum_batch_tokens_mean <= step.cum_tokens_mean
