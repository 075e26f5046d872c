"""Read the runner's report lines (format in :mod:`postprocess.sandbox.runner`).

Only lines that start with this run's nonce count; anything else on the report fd (the code may
write there too) is ignored, and so is a line that does not parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["Report", "parse_report"]

_KINDS = frozenset({"start", "load", "item", "done"})


@dataclass
class Report:
    """What the runner reported: ``items`` maps a statement's index to its error (None: passed)."""

    started: bool = False
    loaded: bool = False
    load_error: str | None = None
    items: dict[int, str | None] = field(default_factory=dict)
    done: bool = False
    limit: str | None = None


def parse_report(data: bytes, nonce: str) -> Report:
    """Collect the lines signed with ``nonce``; the first limit named wins."""
    report = Report()
    prefix = nonce.encode() + b" "
    for raw in data.split(b"\n"):
        if not raw.startswith(prefix):
            continue
        parts = raw[len(prefix) :].decode("ascii", "replace").split(" ", 3)
        if len(parts) != 4 or parts[0] not in _KINDS:
            continue
        kind, index_text, limit, error_text = parts
        try:
            index = int(index_text)
            error = json.loads(error_text)
        except ValueError:
            continue
        if error is not None and not isinstance(error, str):
            continue
        if report.limit is None and limit != "-":
            report.limit = limit
        if kind == "start":
            report.started = True
        elif kind == "load":
            report.loaded = error is None
            report.load_error = error
        elif kind == "item":
            report.items[index] = error
        else:
            report.done = True
    return report
