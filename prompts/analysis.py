"""Check a dataset against the templates that will render it, before the first model call.

A row that lacks a field its template reads would fail at render time, one item at a time and
possibly hours into a run. Reading the templates' variables once and comparing every row against
them reports every problem at once, with its line number, before anything is spent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from prompts.loader import ROLES, TemplateEnvironment
from prompts.variables import HIDDEN_FIELDS
from refine.errors import FieldProblem, MissingFieldsError, TemplateError

__all__ = ["check_rows"]


def check_rows(
    env: TemplateEnvironment,
    task: str,
    rows: Iterable[tuple[int, Mapping[str, object]]],
    provided: set[str] | frozenset[str],
    path: Path,
    roles: Sequence[str] = ROLES,
) -> None:
    """Raise one :class:`MissingFieldsError` listing every row field the templates need but lack.

    ``rows`` are ``(line number, fields)`` pairs with optional defaults already filled in;
    ``provided`` are the engine's variable names (see :mod:`prompts.variables`); ``path`` is
    the dataset, named in the error. A row field named like an engine variable is reported too,
    since the engine's value would hide it. A template that reads ``reference`` or ``id`` is
    refused outright: those fields never reach templates. ``roles`` are the role templates the
    run will render (by default the plain steps').
    """
    used_by: dict[str, list[str]] = {}
    for role in roles:
        for name in env.variables_used(task, (role,)):
            used_by.setdefault(name, []).append(f"{task}/{role}.j2")

    hidden = sorted(HIDDEN_FIELDS & used_by.keys())
    if hidden:
        where = "; ".join(f"{name!r} in {', '.join(used_by[name])}" for name in hidden)
        raise TemplateError(
            f"templates use {where}: references are kept for rewards and ids for bookkeeping, "
            "so neither ever reaches templates"
        )

    required = {name: files for name, files in used_by.items() if name not in provided}
    problems: list[FieldProblem] = []
    for line, row in rows:
        available = set(row) - HIDDEN_FIELDS
        for name in sorted(required.keys() - available):
            message = f"missing field used by template {', '.join(required[name])}"
            problems.append(FieldProblem(line, name, message))
        for name in sorted(available & provided):
            message = "field name clashes with an engine variable of the same name; rename it"
            problems.append(FieldProblem(line, name, message))
    if problems:
        raise MissingFieldsError(
            path,
            problems,
            hint="Add the missing fields to those rows, or change the templates that use them.",
        )
