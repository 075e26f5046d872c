"""Check a dataset against the templates that will render it, before the first model call.

A row that lacks a field its template reads would fail at render time, one item at a time and
possibly hours into a run. Reading the templates' variables once and comparing every row against
them reports every problem at once, with its line number, before anything is spent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from prompts.loader import ROLES, TemplateEnvironment
from prompts.variables import HIDDEN_FIELDS
from refine.errors import FieldProblem, MissingFieldsError, TemplateError

__all__ = ["check_rows", "no_value"]


def check_rows(
    env: TemplateEnvironment,
    task: str,
    rows: Iterable[tuple[int, Mapping[str, object]]],
    provided: set[str] | frozenset[str],
    path: Path,
    roles: Sequence[str] = ROLES,
    *,
    optional: Iterable[str] = (),
    missing_values: Iterable[str] = (),
) -> None:
    """Raise one :class:`MissingFieldsError` listing every row field the templates need but lack,
    or hold no value in: null, NaN, empty or only spaces (the prompt would say ``None``,
    ``nan`` or nothing), or text in ``missing_values`` (a CSV's spelled-out missing values, see
    ``flows.data.dataset.CSV_MISSING_VALUES``).

    ``rows`` are ``(line number, fields)`` pairs with optional defaults already filled in;
    ``provided`` are the engine's variable names (see :mod:`prompts.variables`); ``path`` is
    the dataset, named in the error. A row field named like an engine variable is reported too,
    since the engine's value would hide it. A template that reads ``reference`` or ``id`` is
    refused outright: those fields never reach templates. ``roles`` are the role templates the
    run will render (by default the plain steps'). ``optional`` fields may hold no value: the
    engine has filled in their defaults already, and templates test them.
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
    spelled = frozenset(missing_values)
    needed = required.keys() - set(optional)
    problems: list[FieldProblem] = []
    for line, row in rows:
        available = set(row) - HIDDEN_FIELDS
        for name in sorted(required.keys() - available):
            message = f"missing field used by template {', '.join(required[name])}"
            problems.append(FieldProblem(line, name, message))
        for name in sorted(needed & available):
            if why := no_value(row[name], spelled):
                message = f"{why}, but template {', '.join(required[name])} uses it"
                problems.append(FieldProblem(line, name, message))
        for name in sorted(available & provided):
            message = "field name clashes with an engine variable of the same name; rename it"
            problems.append(FieldProblem(line, name, message))
    if problems:
        raise MissingFieldsError(
            path,
            problems,
            hint="Give those rows the fields and values, or change the templates that use them.",
        )


def no_value(value: object, missing_values: frozenset[str] = frozenset()) -> str | None:
    """Why ``value`` gives a template nothing to show (``"is null"``, ``"is empty"``, ``"looks
    like a missing value 'NaN'"``), or None when it is a value."""
    if value is None:
        return "is null"
    if isinstance(value, float) and math.isnan(value):
        return "is NaN"
    if isinstance(value, str):
        if not value:
            return "is empty"
        if not value.strip():
            return "holds only whitespace"
        if value.strip() in missing_values:
            return f"looks like a missing value {value.strip()!r}"
    return None
