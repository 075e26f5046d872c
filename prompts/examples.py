"""Few-shot demonstrations: JSONL files of input fields plus the ``output`` a good answer gives.

summarize and qa ship a few demos next to their templates; any task may use a user's file.
Demos are read and checked once, up front, so a broken line fails with its file and line number
instead of as an undefined variable in the middle of a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prompts.analysis import no_value
from prompts.loader import PACKAGED_TEMPLATES
from refine.errors import ConfigError, FieldProblem, InputError
from refine.jsonl import parse_jsonl

__all__ = ["load_examples", "packaged_examples"]


def load_examples(path: Path, required: Iterable[str] = ()) -> list[dict[str, object]]:
    """Read a few-shot JSONL file: one object per line with a string ``output``.

    ``required`` names input fields every demo must carry (the task's fields the templates show
    for each demo), each with a value: null, NaN, empty or only spaces is a problem too. Blank
    lines are skipped. Every bad line is reported in one :class:`InputError` naming the file,
    the line and the field.
    """
    path = Path(path)
    try:
        rows, problems = parse_jsonl(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"few-shot examples file {path} does not exist") from None
    except OSError as exc:
        raise InputError(path, [FieldProblem(0, None, f"cannot read the file: {exc}")]) from exc

    needed = ("output", *required)
    examples: list[dict[str, object]] = []
    for number, row in rows:
        missing = [name for name in needed if name not in row]
        problems.extend(FieldProblem(number, name, "missing field") for name in missing)
        for name in needed:
            if name in row and (why := no_value(row[name])):
                problems.append(FieldProblem(number, name, why))
        if "output" in row and not isinstance(row["output"], str):
            problems.append(FieldProblem(number, "output", "must be a string"))
        if not missing:
            examples.append(row)
    if problems:
        problems.sort(key=lambda p: p.line)
        raise InputError(path, problems, hint="Each line needs the task's input fields and output.")
    return examples


def packaged_examples(task: str) -> Path | None:
    """The demo file shipped with a task kind, or None for tasks without packaged demos."""
    path = PACKAGED_TEMPLATES / task / "examples.jsonl"
    return path if path.is_file() else None
