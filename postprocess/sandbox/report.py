"""Read the runner's report lines (format in :mod:`postprocess.sandbox.runner`).

Only lines that start with this run's nonce count; anything else on the report fd (the code may
write there too) is ignored, and so is a line that does not parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["OwnCheck", "Report", "parse_report"]

_KINDS = frozenset({"start", "load", "item", "check", "own", "done"})


@dataclass(frozen=True)
class OwnCheck:
    """One check the code ran on itself: where, what, and its error (None: passed, or never
    finished when ``finished`` is False)."""

    line: int
    source: str
    error: str | None
    finished: bool


@dataclass
class Report:
    """What the runner reported: ``items`` maps a statement's index to its error (None: passed)."""

    started: bool = False
    loaded: bool = False
    load_error: str | None = None
    items: dict[int, str | None] = field(default_factory=dict)
    done: bool = False
    limit: str | None = None
    own: dict[int, OwnCheck] = field(default_factory=dict)


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
        if kind in ("check", "own"):
            check = _own_check(error, finished=kind == "own")
            if check is None:
                continue
            report.own[index] = check
        elif error is not None and not isinstance(error, str):
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
        elif kind == "done":
            report.done = True
    return report


def _own_check(payload: object, *, finished: bool) -> OwnCheck | None:
    """``[line, source]`` when a check starts, ``[line, source, error]`` when it ends."""
    if not isinstance(payload, list) or len(payload) != 2 + finished:
        return None
    line, source, *rest = payload
    error = rest[0] if rest else None
    if not isinstance(line, int) or not isinstance(source, str):
        return None
    if error is not None and not isinstance(error, str):
        return None
    return OwnCheck(line, source, error, finished)
