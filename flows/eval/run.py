"""Evaluating output files into a report and its files: what ``refine eval`` does, with or
without Prefect (:mod:`flows.evaluate` wraps it as a flow that also publishes artifacts).
No Prefect import here, so the plain command starts in about a second."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from flows.eval.compare import CompareReport, compare_runs
from flows.eval.curves import read_curves
from flows.eval.frontier import FrontierReport, frontier
from flows.eval.report import (
    compare_rows,
    compare_table,
    eval_rows,
    eval_table,
    frontier_table,
    write_compare_files,
    write_eval_files,
    write_frontier_files,
)
from flows.eval.stats import SELECTIONS, EvalReport, evaluate
from refine.errors import ConfigError

__all__ = ["EvalRequest", "EvalResult", "default_folder", "evaluate_files"]


@dataclass
class EvalResult:
    """A report and the files written for it; a comparison also has the later runs' reports
    against the first (three runs or more) and the frontier of all of them."""

    report: EvalReport | CompareReport
    files: list[Path]
    more: list[CompareReport] = field(default_factory=list)
    frontier: FrontierReport | None = None

    @property
    def table(self) -> Table:
        """The terminal view of the (first) report."""
        if isinstance(self.report, CompareReport):
            return compare_table(self.report)
        return eval_table(self.report)

    @property
    def tables(self) -> list[Table]:
        """Every table to show: the report, the later comparisons, the frontier."""
        extra = [compare_table(report) for report in self.more]
        return [self.table, *extra, *([frontier_table(self.frontier)] if self.frontier else [])]

    def rows(self) -> list[dict[str, object]]:
        """The table as flat rows (the CSV's)."""
        if isinstance(self.report, CompareReport):
            return compare_rows(self.report)
        return eval_rows(self.report)


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate and where the files go; two outputs or more (A, then B, C, ...) mean
    a comparison: each later run against A, and the frontier of all."""

    outputs: tuple[Path, ...]
    folder: Path
    reward: str | None = None
    select: str = "output"
    resamples: int = 10_000
    seed: int = 0
    dataset: Path | None = None
    scores: tuple[str, ...] = ()

    @property
    def compare(self) -> bool:
        return len(self.outputs) >= 2

    def checked(self) -> EvalRequest:
        """Itself, once its settings are known good; else a ConfigError naming the flag."""
        if not self.outputs:
            raise ConfigError("refine eval takes one output file, or --compare A B [C ...]")
        if self.select not in SELECTIONS:
            raise ConfigError(f"--select is one of {', '.join(SELECTIONS)}, not {self.select!r}")
        if self.resamples < 100:
            raise ConfigError(f"--resamples must be at least 100, not {self.resamples}")
        if bool(self.scores) != (self.dataset is not None):
            raise ConfigError("--score and --input go together: the rewards need the references")
        return self


def default_folder(outputs: Sequence[Path]) -> Path:
    """Beside the (last) output file: ``out.eval/`` for one run, ``b.compare/`` for more."""
    last = outputs[-1]
    return last.with_name(last.stem + (".compare" if len(outputs) >= 2 else ".eval"))


def evaluate_files(request: EvalRequest) -> EvalResult:
    """Read the output file(s), compute the report, write its files into the folder."""
    request = request.checked()
    rescore = None
    if request.dataset is not None:
        from flows.eval.rescore import Rescorer

        rescore = Rescorer(request.dataset, request.scores)
    reward = request.reward or (rescore.labels[0] if rescore else None)
    if request.compare:
        runs = [(str(path), read_curves(path, rescore)) for path in request.outputs]
        (first, a), later = runs[0], runs[1:]
        pairs = [
            compare_runs(
                a,
                b,
                (first, name),
                reward=reward,
                selection=request.select,
                resamples=request.resamples,
                seed=request.seed,
            )
            for name, b in later
        ]
        files: list[Path] = []
        for index, pair in enumerate(pairs, start=1):
            suffix = "" if len(pairs) == 1 else f"-{index}"
            files += write_compare_files(pair, request.folder, suffix)
        plane = frontier(
            runs,
            pairs[0].reward,
            selection=request.select,
            resamples=request.resamples,
            seed=request.seed,
        )
        files += write_frontier_files(plane, request.folder)
        return EvalResult(pairs[0], files, pairs[1:], plane)
    records = read_curves(request.outputs[0], rescore)
    single = evaluate(records, str(request.outputs[0]), reward=reward)
    return EvalResult(single, write_eval_files(single, request.folder))
