"""What ``refine run`` prints around a run: the rows left out before it, its table after it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from flows.batch import BatchSummary
    from flows.loop.preflight import CheckedInput

__all__ = [
    "print_skipped",
    "print_summary",
    "summary_figures",
    "write_figures",
    "write_summary_json",
]


def print_skipped(input_path: Path, checked: CheckedInput) -> None:
    """Name each input row left out as invalid, before the run starts."""
    lines = "\n".join(f"  {input_path}:{problem}" for problem in checked.skipped)
    invalid, read = len(checked.skipped_lines), checked.rows_read
    Console(stderr=True).print(
        f"[yellow]skipped {invalid} invalid row(s) of {read} read (--skip-invalid):[/]\n"
        + escape(lines),
        highlight=False,
        soft_wrap=True,
    )


def _tokens(summary: BatchSummary) -> str:
    """The run's token counts, marked when some of them are estimates (answers without usage)."""
    counts = f"{summary.prompt_tokens} / {summary.completion_tokens}"
    return f"{counts} (some estimated)" if summary.tokens_estimated else counts


def print_summary(summary: BatchSummary) -> None:
    """The run's table: where every input row went, then what the run cost."""
    table = Table(title="refine run", show_header=False)
    for label, value in [
        ("output", str(summary.output_path)),
        *_row_counts(summary),
        ("ok", summary.ok),
        ("failed", f"{summary.failed} (+{summary.failed_before} in earlier runs)"),
        ("HTTP requests", summary.http_attempts),
        ("cache hits", summary.cache_hits),
        ("prompt / completion tokens", _tokens(summary)),
        *_batch_rows(summary),
        ("stop reasons", ", ".join(f"{k} {v}" for k, v in summary.stop_reasons.items()) or "-"),
        ("wall time", f"{summary.wall_s:.2f} s"),
    ]:
        table.add_row(label, str(value))
    Console().print(table)


def _row_counts(summary: BatchSummary) -> list[tuple[str, object]]:
    """Rows read = skipped as invalid + already finished + run; retried are among those run."""
    chosen = [("input rows taken", summary.selection)] if summary.selection else []
    return [
        *chosen,
        ("rows read", summary.rows_read),
        ("skipped as invalid", summary.invalid),
        ("already finished (resumed)", summary.skipped),
        ("run", summary.ran),
        ("retried (failed before)", summary.retried),
    ]


def _batch_rows(summary: BatchSummary) -> list[tuple[str, object]]:
    """A Batch API run's batches, and the tokens billed at the batch price."""
    if summary.mode != "batch":
        return []
    online = f", {summary.answered_online} sent online" if summary.answered_online else ""
    submitted = f"{summary.batches_submitted} ({summary.batch_requests} requests{online})"
    rows: list[tuple[str, object]] = [("batches submitted", submitted)]
    if summary.batches_reattached:
        rows.append(("batches re-attached (from an earlier run)", summary.batches_reattached))
    rows.append(("tokens at batch price", summary.batch_tokens))
    return rows


def summary_figures(summary: BatchSummary, input_path: Path) -> dict[str, object]:
    """The figures of the summary table as JSON-ready values (``--summary-json``): every
    field of :class:`flows.ui.summary.BatchSummary` (counts, tokens, ``wall_s`` in seconds,
    ``selection`` null for a run over all rows), the input, and ``exit_code`` as the command
    ends with it (0: every item ok, no row left out)."""
    figures: dict[str, object] = {"input_path": str(input_path)}
    figures.update(summary.model_dump(mode="json"))
    clean = summary.failed == summary.failed_before == summary.invalid == 0
    figures["exit_code"] = 0 if clean else 1
    return figures


def write_summary_json(path: Path, summary: BatchSummary, input_path: Path) -> None:
    """Write :func:`summary_figures` to ``path`` (see :func:`write_figures`)."""
    write_figures(path, summary_figures(summary, input_path))


def write_figures(path: Path, figures: dict[str, object]) -> None:
    """Write ``figures`` to ``path`` as indented JSON, atomically: a reader never sees half a
    file, and a run that ends with an error leaves an older file as it was."""
    import json

    from refine.atomic_file import write_bytes_atomic

    text = json.dumps(figures, indent=2, ensure_ascii=False)
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))
