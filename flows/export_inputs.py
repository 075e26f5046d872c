"""What ``refine export`` reads: a run's output records, the dataset, and step-1 prompts.

Records are read one line at a time, so memory holds one record, never the file. The dataset
supplies what records leave out: the input ``x`` and the reference. The prompt of an SFT or
preference line is rendered the way ``refine run`` renders step 1 (same config layers, task
defaults, templates and few-shot demos), from x alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from flows.export_formats import ChatMessage
from flows.records import Item, Trajectory
from refine.errors import FieldProblem, InputError, RefineError, TemplateError
from refine.jsonl import not_utf8

__all__ = ["RecordReader", "StepOnePrompts", "read_dataset"]

NOT_A_RUN = "OUTPUT must be a file written by refine run (one record a line)"


class RecordReader:
    """The records of a run's output file with their line numbers, in file order.

    A last line without its newline is a run still writing (or killed mid-line): it is read if
    it parses and skipped otherwise (``torn_tail`` says so). Any other bad line, or an id seen
    twice, is an InputError naming the file and line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_tail = False

    def __iter__(self) -> Iterator[tuple[int, Trajectory]]:
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            raise InputError(self.path, [FieldProblem(0, None, "file not found")]) from None
        except OSError as exc:
            problem = FieldProblem(0, None, f"cannot read: {exc.strerror}")
            raise InputError(self.path, [problem]) from None
        seen: dict[str, int] = {}
        with fh:
            for number, raw in enumerate(fh, start=1):
                complete = raw.endswith(b"\n")
                if not raw.strip():
                    continue
                try:
                    record = self._parse(number, raw)
                except InputError:
                    if complete:
                        raise
                    self.torn_tail = True
                    return
                if record.id in seen:
                    self._fail(number, f"id {record.id!r} again (first on line {seen[record.id]})")
                seen[record.id] = number
                yield number, record

    def _parse(self, number: int, raw: bytes) -> Trajectory:
        if problem := not_utf8(number, raw):
            raise InputError(self.path, [problem], NOT_A_RUN)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            self._fail(number, f"not valid JSON: {msg}")
        try:
            return Trajectory.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "(the line)"
            self._fail(number, f"not an output record: {where}: {error['msg']}")

    def _fail(self, number: int, message: str) -> NoReturn:
        raise InputError(self.path, [FieldProblem(number, None, message)], NOT_A_RUN)


def read_dataset(path: Path) -> tuple[dict[str, Item], list[FieldProblem]]:
    """The dataset's good rows by id, and its bad rows' problems.

    Bad rows are not fatal: a run with ``--skip-invalid`` left them out, so they have no
    records; a record whose id is not among the good rows is caught by the caller.
    """
    from flows.dataset import read_rows

    items, problems = read_rows(path)
    if not items:
        raise InputError(path, problems or [FieldProblem(0, None, "the file has no rows")])
    return {item.id: item for item in items}, problems


class StepOnePrompts:
    """Renders the system and user messages step 1 of ``refine run`` sends for an item."""

    def __init__(
        self,
        dataset: Path,
        items: list[Item],
        config_file: Path | None,
        overrides: dict[str, Any],
    ) -> None:
        """Build the run's config exactly as ``refine run`` does (flags over file over
        environment), with the task defaults the same dataset gives it."""
        from flows.runtime import examples_for, templates_for
        from flows.settings import build_run_config
        from flows.task_defaults import with_task_defaults

        self.dataset = dataset
        self.config = with_task_defaults(build_run_config(overrides, config_file), items)
        self.kind, self.env = templates_for(self.config)
        self.examples = examples_for(self.config, self.kind)

    def __call__(self, item: Item) -> list[ChatMessage]:
        """The step-1 messages for ``item`` (step 1 never renders the fix template)."""
        from flows.engine import input_fields, step_variables

        fields = input_fields(item, self.kind, self.config)
        variables = step_variables(self.config, fields, [], self.examples, 1)
        try:
            messages = self.env.render_messages(self.kind.name, 1, variables, role=None)
        except RefineError as exc:
            raise TemplateError(
                f"{self.dataset}: line {item.line}, item {item.id!r}: step-1 prompt: {exc}"
            ) from None
        return [ChatMessage.model_validate(message) for message in messages]
