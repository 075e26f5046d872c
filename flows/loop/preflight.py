"""The input check before a run spends anything.

Every bad row (a malformed line, a duplicate id, bytes that are not UTF-8, text that is not valid
Unicode, a field a template needs but the row lacks or holds no value in, an optional field of the
wrong kind, a field longer than a whole prompt may be, unparseable tests) is found before the
first request. Without ``skip_invalid`` one InputError names each of them by file, line and
field; with it those rows are reported and left out, and the rest run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from flows.config.run import RunConfig
from flows.data.dataset import CSV_MISSING_VALUES, rows_found
from flows.data.input_config import chosen_from
from flows.data.reading import ItemStream, item_blocks, open_source
from flows.data.records import Item
from flows.data.sources import DataSource, TextFileSource
from flows.loop.defaults import with_task_defaults
from flows.loop.plan import LoopPlan, build_plan, check_loop_inputs, cleaner_chain
from flows.loop.render import StepRenderer
from prompts import ENGINE_VARIABLES, ROLES, TemplateEnvironment, check_rows
from prompts.values import empty_value, not_text, show_value
from refine.errors import FieldProblem, InputError, MissingFieldsError

__all__ = [
    "CheckedInput",
    "check_items",
    "load_input",
    "oversized_fields",
    "roles_used",
    "value_problems",
]

TEXT_ONLY_FIELDS: frozenset[str] = frozenset({"source_lang", "target_lang", "context"})
"""Optional task fields that only text fits (translate's languages, qa's context): ``false`` or
``{"x": 1}`` there would print as "the false translation". Codegen's optional ``tests`` may be a
list of strings too; :func:`flows.loop.plan.check_loop_inputs` checks them."""


@dataclass(frozen=True)
class CheckedInput:
    """The rows a run will refine, and the bad rows left out (only under ``skip_invalid``).

    ``rows_read`` counts the rows (records) chosen from the dataset (all, or those ``--limit``
    or ``--sample`` chose), good or bad: blank lines, a CSV header and lines an unclosed quote
    swallowed are not rows. Each row read is either in ``items`` or left out, so
    ``rows_read == len(items) + len(skipped_lines)``. ``items`` is a list for a JSONL or CSV
    file and an :class:`~flows.data.reading.ItemStream` (read again when iterated) for Parquet
    and Hugging Face datasets; ``ids`` are its ids in order, and ``exemplars`` the few items
    that decide the task defaults (the first with a reference, the first with tests).
    """

    items: Collection[Item]
    skipped: list[FieldProblem] = field(default_factory=list)
    rows_read: int = field(kw_only=True)
    ids: list[str] = field(kw_only=True, default_factory=list)
    exemplars: list[Item] = field(kw_only=True, default_factory=list)
    selection: str | None = field(kw_only=True, default=None)

    @property
    def skipped_lines(self) -> list[int]:
        """The input lines left out, each once, in order."""
        return sorted({problem.line for problem in self.skipped})


CHECK_BLOCK_ROWS = 2048
"""Rows of a Parquet file or a dataset checked at once: each check has a fixed cost (reading the
templates' variables), and a block's rows are all the check holds."""


def roles_used(config: RunConfig, plan: LoopPlan) -> tuple[str, ...]:
    """The role templates a run renders: the steps', ``fix``, and critique and judge if used."""
    roles = (*ROLES, "fix")
    if config.critique.enabled:
        roles += ("critique",)
    if plan.judges:
        roles += ("judge",)
    return roles


def check_items(
    items: list[Item], config: RunConfig, path: Path, *, render_first: bool = True
) -> None:
    """Check every row against the variables its templates use, then render the first row
    (unless ``render_first`` is False: a later block of a dataset whose first row rendered).

    Raises MissingFieldsError (every missing field of every row at once), or InputError /
    TemplateError / ConfigError for bad demos, templates, cleaners, validators, rewards, tests
    or a missing sandbox: problems that would fail every item are found here, not after the
    requests are paid for.
    """
    config = with_task_defaults(config, items)
    plan = build_plan(config)
    renderer = StepRenderer.for_config(config)
    roles = roles_used(config, plan)
    rows = [(item.line, renderer.fields(item)) for item in items]
    found = value_problems(renderer.env, renderer.kind.name, rows, roles, renderer.kind.optional)
    try:
        check_rows(
            renderer.env,
            renderer.kind.name,
            rows,
            set(ENGINE_VARIABLES),
            path,
            roles,
            optional=renderer.kind.optional,
            missing_values=CSV_MISSING_VALUES if path.suffix.lower() == ".csv" else (),
        )
    except MissingFieldsError as exc:
        if not found:
            raise
        problems = sorted([*exc.problems, *found], key=lambda p: (p.line, p.field or ""))
        raise MissingFieldsError(path, problems, hint=exc.hint) from None
    if found:
        raise MissingFieldsError(
            path,
            found,
            hint="Give those rows the fields and values, or change the templates that use them.",
        )
    cleaner_chain(config, renderer.kind)
    check_loop_inputs(plan, items, path)
    if items and render_first:
        for step in range(1, min(config.steps, 2) + 1):  # initial.j2, then refine.j2
            renderer.placeholder(items[0], step)
        for role in roles[len(ROLES) :]:
            renderer.placeholder(items[0], min(config.steps, 2), role)


def value_problems(
    env: TemplateEnvironment,
    task: str,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    roles: Sequence[str],
    optional: Mapping[str, object],
) -> list[FieldProblem]:
    """The junk :func:`prompts.check_rows` lets through, one problem per row and field.

    A required field a template uses that holds nothing to show although it is not null, empty
    or only whitespace (those check_rows reports): text of only invisible characters such as
    U+200B, ``[]``, ``{}``, or a list or object of only null or empty values (see
    :func:`prompts.values.empty_value`). An optional field a template uses that only text fits
    (:data:`TEXT_ONLY_FIELDS`) holding a boolean, a number, a list or an object. ``rows`` hold
    the fields with optional defaults filled in, so a null or empty optional field already holds
    its default here.
    """
    used_by: dict[str, list[str]] = {}
    for role in roles:
        for name in env.variables_used(task, (role,)):
            used_by.setdefault(name, []).append(f"{task}/{role}.j2")
    problems = []
    for line, row in rows:
        for name in sorted(used_by.keys() & row.keys() - ENGINE_VARIABLES):
            files = ", ".join(used_by[name])
            if name not in optional:
                if why := empty_value(row[name]):
                    problems.append(
                        FieldProblem(line, name, f"{why}, but template {files} uses it")
                    )
            elif name in TEXT_ONLY_FIELDS and (why := not_text(row[name])):
                problems.append(FieldProblem(line, name, f"{why} (template {files} uses it)"))
    return problems


def oversized_fields(items: list[Item], max_prompt_chars: int) -> list[FieldProblem]:
    """A problem for each field longer than a whole prompt may be: it can never render.

    A field is measured as templates print it (an object or a list as its JSON text).
    """
    problems = []
    for item in items:
        for name, value in item.fields.items():
            size = len(str(show_value(value)))
            if size > max_prompt_chars:
                problems.append(
                    FieldProblem(
                        item.line,
                        name,
                        f"{size:,} characters, more than a whole prompt may hold "
                        f"(max_prompt_chars = {max_prompt_chars:,}): shorten it or raise the cap",
                    )
                )
    return problems


def load_input(path: Path, config: RunConfig) -> CheckedInput:
    """Read the dataset ``path`` names and check every chosen row against the run's templates.

    Raises InputError naming every bad row at once, unless ``config.skip_invalid`` is set; then
    the bad rows come back in ``skipped`` and only a problem of the whole file (no rows, none
    left) raises. Errors that no row causes (templates, demos, sandbox) always raise. A JSONL
    or CSV file is checked in memory; Parquet and Hugging Face datasets a block of rows at a
    time, in two passes (the first finds the rows that decide the task defaults).
    """
    source = open_source(path, config.input)
    path = source.path
    if isinstance(source, TextFileSource):
        blocks = list(item_blocks(source, config.input, size=2**62))
        exemplars = _exemplars(item for block, _ in blocks for item in block)
        checked = _Checked(kept=[])
        for block, found in blocks:
            checked.add(path, block, found, config)
    else:
        _check_columns(source, with_task_defaults(config, []))  # before reading any row
        exemplars = _exemplars(
            item for block, _ in item_blocks(source, config.input) for item in block
        )
        defaults = with_task_defaults(config, exemplars)
        checked = _Checked()
        for block, found in item_blocks(source, config.input, size=CHECK_BLOCK_ROWS):
            checked.add(path, block, found, defaults)
    problems = sorted(checked.problems, key=lambda p: p.line)
    if checked.rows_read == 0 and not problems:
        problems = [FieldProblem(0, None, "the file has no rows")]
    whole_file = any(p.line == 0 for p in problems)
    if problems and (whole_file or not config.skip_invalid):
        _raise_all(path, problems, checked.found, whole_file, _columns_hint(source, checked))
    if not checked.ids:
        raise InputError(path, [FieldProblem(0, None, "no valid rows left to run"), *problems])
    items: Collection[Item]
    if checked.kept is not None:
        items = checked.kept
    else:
        bad = frozenset(p.line for p in problems)
        items = ItemStream(source, config.input, bad, len(checked.ids))
    return CheckedInput(
        items,
        problems,
        rows_read=checked.rows_read,
        ids=checked.ids,
        exemplars=exemplars,
        selection=chosen_from(config.input, checked.rows_read),
    )


def _exemplars(items: Iterable[Item]) -> list[Item]:
    """The first item with a reference and the first with tests: all the task defaults look
    at (:mod:`flows.loop.defaults`), so they decide them as the whole dataset would."""
    found: dict[str, Item] = {}
    for item in items:
        if "reference" not in found and item.reference not in (None, "", []):
            found["reference"] = item
        if "tests" not in found and item.fields.get("tests"):
            found["tests"] = item
        if len(found) == 2:
            break
    return list(found.values())


@dataclass
class _Checked:
    """What the blocks of a dataset added up to: the rows read, the good ids, every problem,
    and (for an in-memory file) the good items themselves."""

    rows_read: int = 0
    ids: list[str] = field(default_factory=list)
    problems: list[FieldProblem] = field(default_factory=list)
    found: list[InputError] = field(default_factory=list)
    kept: list[Item] | None = None  # a list only where the items are kept (JSONL, CSV)
    rendered: bool = False  # a row rendered: later blocks only check their values

    def add(
        self, path: Path, items: list[Item], problems: list[FieldProblem], config: RunConfig
    ) -> None:
        """Check one block's rows; keep its good ids (and items) and every problem: the
        block's own (``problems``: bad lines and ids), every field too long for a prompt, and
        what the templates' check finds."""
        self.rows_read += rows_found(items, problems)  # before a good row gets a problem too
        problems = problems + oversized_fields(items, config.max_prompt_chars)
        good = _without(items, problems)
        while good:
            try:
                check_items(good, config, path, render_first=not self.rendered)
                self.rendered = True
                break
            except InputError as exc:  # rows missing template fields, rows with bad tests
                if exc.path != path or any(p.line == 0 for p in exc.problems):
                    raise  # a demo file, or the whole dataset: no row to leave out
                remaining = _without(good, exc.problems)
                if len(remaining) == len(good):
                    raise
                self.found.append(exc)
                problems = problems + exc.problems
                good = remaining
        self.problems += problems
        self.ids += [item.id for item in good]
        if self.kept is not None:
            self.kept += good


def _check_columns(source: DataSource, config: RunConfig) -> None:
    """Refuse at once, naming the variable and the columns, a dataset whose schema has no
    column for a variable the templates need: every row would lack it, and listing a million
    rows (after reading them) says less than one line."""
    columns = source.columns()
    if columns is None:
        return
    mapped = config.input.map
    available = (set(columns) - set(mapped.values())) | set(mapped)
    renderer = StepRenderer.for_config(config)
    roles = roles_used(config, build_plan(config))
    needed = renderer.env.variables_used(renderer.kind.name, roles)
    missing = sorted(needed - ENGINE_VARIABLES - set(renderer.kind.optional) - available)
    if missing:
        listed = ", ".join(columns)
        problems = [
            FieldProblem(
                0, name, f"no column feeds it, but the task's templates use it (columns: {listed})"
            )
            for name in missing
        ]
        hint = "Feed it from a column with --map VARIABLE=COLUMN (or [input] map in the config)."
        raise MissingFieldsError(source.path, problems, hint=hint)


def _columns_hint(source: DataSource, checked: _Checked) -> str:
    """Where rows lack template fields: the dataset's columns and how to map one."""
    if not any(isinstance(exc, MissingFieldsError) for exc in checked.found):
        return ""
    columns = source.columns()
    listed = f"The dataset's columns: {', '.join(columns)}. " if columns else ""
    return (
        f"{listed}Feed a template variable from a column of another name with "
        "--map VARIABLE=COLUMN (or [input] map in the config)."
    )


def _raise_all(
    path: Path,
    problems: list[FieldProblem],
    found: list[InputError],
    whole_file: bool,
    columns_hint: str = "",
) -> NoReturn:
    """One error for every problem; of the checks' own kind when only one check found any."""
    kinds = {type(exc) for exc in found}
    only = (
        found[0]
        if len(kinds) == 1 and sum(len(e.problems) for e in found) == len(problems)
        else None
    )
    hints = [exc.hint for exc in found if exc.hint]
    if columns_hint:
        hints.append(columns_hint)
    if not whole_file:
        hints.append("Or pass --skip-invalid to run the other rows.")
    error_type = type(only) if only is not None else InputError
    raise error_type(path, problems, hint="\n".join(dict.fromkeys(hints)))


def _without(items: list[Item], problems: list[FieldProblem]) -> list[Item]:
    bad = {problem.line for problem in problems}
    return [item for item in items if item.line not in bad]
