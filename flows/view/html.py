"""``refine report --html``: one self-contained HTML page of a run's output.

The page holds the run's figures (:mod:`flows.ui.run_stats`), the eval plots of
:func:`flows.eval.plots.report_plots` as inline PNG data URIs, a sortable table of every item and,
per item, its trajectory: each draft as a word diff against the one before it
(:func:`flows.view.diff.word_diff`), with its problems, rewards and critique, and which draft the
run returned. No request leaves the page: styles and the sorting script are inline and a
Content-Security-Policy forbids every fetch.

Draft text is untrusted model output: the Jinja environment escapes every value. The output is
read through :mod:`flows.data.output_reader` (each id once, by its latest record), the page is
rendered as a stream into :func:`refine.atomic_file.atomic_write`, so memory holds the table's
rows, not the drafts, and a failed report never leaves a half-written page.
"""

from __future__ import annotations

import base64
import importlib.resources
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined

from flows.data.output_reader import OUTPUT_HINT, RecordReader
from flows.data.records import Trajectory
from flows.eval.curves import read_curves
from flows.eval.plots import cost_quality_plot, reward_plot, stop_plot
from flows.eval.report import eval_rows
from flows.eval.stats import EvalReport, evaluate
from flows.ui.run_stats import RunStats, read_run_stats
from flows.view.diff import Change
from flows.view.items import DraftView, ItemSummary, draft_views, summarize
from refine.atomic_file import atomic_write
from refine.errors import ConfigError, FieldProblem, InputError

__all__ = ["MAX_TEXT_CHARS", "ItemPage", "Plot", "Written", "item_page", "write_report"]

MAX_TEXT_CHARS = 20_000
"""A draft longer than this is cut on the page (with a note): a page of thousands of items
stays small enough to open."""


@dataclass(frozen=True)
class ItemPage:
    """One item as the page shows it: its table line, its drafts (each diffed against the one
    before, cut at :data:`MAX_TEXT_CHARS`) and its output. ``anchor`` is the HTML id of its
    details (ids of items may hold any character, so the page numbers them)."""

    anchor: str
    item: ItemSummary
    drafts: list[DraftView]
    clipped: list[bool]
    output: str | None


def _clip(changes: list[Change]) -> tuple[list[Change], bool]:
    """``changes`` up to :data:`MAX_TEXT_CHARS` characters, and whether any were cut."""
    kept: list[Change] = []
    room = MAX_TEXT_CHARS
    for change in changes:
        if len(change.text) > room:
            if room:
                kept.append(Change(change.op, change.text[:room]))
            return kept, True
        kept.append(change)
        room -= len(change.text)
    return kept, False


def item_page(index: int, record: Trajectory) -> ItemPage:
    """The ``index``-th item of the file as the page shows it."""
    drafts, clipped = [], []
    for view in draft_views(record):
        changes, cut = _clip(view.changes)
        drafts.append(replace(view, changes=changes))
        clipped.append(cut)
    output = record.output[:MAX_TEXT_CHARS] if record.output is not None else None
    return ItemPage(f"item-{index}", summarize(record), drafts, clipped, output)


@dataclass(frozen=True)
class Plot:
    """One inline plot: its title and its PNG as a ``data:`` URI."""

    title: str
    uri: str


def _plots(report: EvalReport) -> list[Plot]:
    """The eval plots worth drawing: the reward plots only when some draft carries a reward."""
    drawn = [("Stop reasons", stop_plot)]
    if report.primary is not None:
        drawn = [("Reward per step", reward_plot), ("Cost against quality", cost_quality_plot)]
        drawn.append(("Stop reasons", stop_plot))
    return [
        Plot(title, "data:image/png;base64," + base64.b64encode(draw(report)).decode("ascii"))
        for title, draw in drawn
    ]


def _environment() -> Environment:
    # autoescape on for every template: draft text, critiques and ids are untrusted
    return Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)


def _template_text() -> str:
    return importlib.resources.files("flows.view").joinpath("report.html.j2").read_text("utf-8")


def _details(output: Path, items: int) -> Iterator[ItemPage]:
    # a run still writing may have appended since the table was read: the table's items only
    for index, (_, record) in enumerate(islice(RecordReader(output), items)):
        yield item_page(index, record)


def _context(output: Path) -> dict[str, Any]:
    """Everything the page shows but the items' details, read before a byte is written.

    Raises:
        InputError: ``output`` is missing, empty or not a run's output file.
    """
    report = evaluate(read_curves(output), str(output))
    reader = RecordReader(output)
    rows = [(f"item-{index}", summarize(record)) for index, (_, record) in enumerate(reader)]
    stats: RunStats = read_run_stats(output, samples=0)
    return {
        "source": output.name,
        "report": report,
        "stats": stats,
        "step_rows": stats.rows(),
        "eval_rows": eval_rows(report),
        "plots": _plots(report),
        "rows": rows,
        "tokens": sum(item.tokens for _, item in rows),
        "max_chars": MAX_TEXT_CHARS,
        "torn_tail": reader.torn_tail,
    }


@dataclass(frozen=True)
class Written:
    """What :func:`write_report` wrote: how many items the page shows, and whether the
    output's last line was torn (cut off mid-write, so left out)."""

    items: int
    torn_tail: bool


def write_report(output: Path, page: Path) -> Written:
    """Write the HTML page of the run in ``output`` to ``page``; returns how many items it
    shows and whether the output's last line was torn.

    Raises:
        InputError: ``output`` is missing, empty or not a run's output file (nothing written).
        ConfigError: ``page`` is the output file itself, or cannot be written (a folder, no
            permission); a page already there is left as it was.
    """
    if page.resolve() == output.resolve():
        raise ConfigError(f"--html {page} is the output file itself; name another file")
    if output.is_dir():
        raise InputError(output, [FieldProblem(0, None, "a folder, not a file")], hint=OUTPUT_HINT)
    context = _context(output)
    template = _environment().from_string(_template_text())
    try:
        with atomic_write(page) as fh:
            for chunk in template.generate(
                **context, details=_details(output, len(context["rows"]))
            ):
                fh.write(chunk.encode("utf-8"))
    except OSError as exc:  # a folder, no permission, a full disk: the old page, if any, stays
        raise ConfigError(f"cannot write the page {page}: {exc.strerror or exc}") from None
    return Written(len(context["rows"]), bool(context["torn_tail"]))
