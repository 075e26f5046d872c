"""Render what one step would send for one row, calling nothing (``refine templates render``)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from flows.config.run import RunConfig
from flows.loop.preflight import load_input
from flows.loop.render import StepRenderer
from refine.errors import FieldProblem, InputError

__all__ = ["render_row"]


def render_row(config: RunConfig, path: Path, line: int, step: int) -> list[dict[str, str]]:
    """The messages of step ``step`` for the row on ``line``; earlier drafts are placeholders."""
    items = load_input(path, config).items  # a Parquet file or a dataset: read, not held
    item = next((i for i in items if i.line == line), None)
    if item is None:
        lines = ", ".join(str(i.line) for i in islice(items, 10))
        raise InputError(path, [FieldProblem(line, None, f"no row here (rows start on: {lines})")])
    steps = max(config.steps, step)
    config = config.model_copy(update={"steps": steps})
    return StepRenderer.for_config(config).placeholder(item, step)
