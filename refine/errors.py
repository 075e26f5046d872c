"""The error hierarchy of prefect-refine.

Every error a user can cause or meet derives from :class:`RefineError`, so the CLI turns each one
into a clear message and an exit code instead of a traceback::

    RefineError
    ├── ConfigError             bad settings, unknown names, a bad flag value
    ├── InputError              a dataset row that cannot be used (file, line, field)
    │   └── MissingFieldsError  rows that lack variables their templates use (all listed at once)
    ├── TemplateError           a template that is missing, broken, unsafe or renders too much
    └── EndpointError           a model call that failed after its retries
        └── FatalEndpointError  401/403/404: no later call can succeed, so the run stops once

It lives in its own small package because all three layers (prompts, postprocess, flows) raise
these errors and none of them may import another one upward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "EndpointError",
    "FatalEndpointError",
    "FieldProblem",
    "InputError",
    "MissingFieldsError",
    "RefineError",
    "TemplateError",
]


class RefineError(Exception):
    """Base of every error prefect-refine raises on purpose."""

    exit_code = 2


class ConfigError(RefineError):
    """A setting, flag or name in the configuration is invalid."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one row of an input file; line 0 means the whole file."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line else []
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class InputError(RefineError):
    """A dataset could not be read; names the file and, for each problem, the line and field."""

    def __init__(self, path: Path | str, problems: Sequence[FieldProblem], hint: str = "") -> None:
        self.path = Path(path)
        self.problems = list(problems)
        self.hint = hint
        shown = "\n".join(
            f"  {self.path}:{p}" if p.line else f"  {self.path}: {p}" for p in self.problems[:50]
        )
        more = len(self.problems) - 50
        if more > 0:
            shown += f"\n  ... and {more} more"
        text = f"{self.path}: {len(self.problems)} problem(s) in the input\n{shown}"
        super().__init__(text + (f"\n{hint}" if hint else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its own arguments: a shard's error crosses process boundaries (Dask).
        return (type(self), (self.path, self.problems, self.hint))


class MissingFieldsError(InputError):
    """Rows lack fields that their templates use; every missing name is reported at once."""


class TemplateError(RefineError):
    """A template is missing, does not parse, breaks the sandbox or renders past the size cap."""


class EndpointError(RefineError):
    """A call to the model endpoint failed after the retry policy gave up."""

    exit_code = 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_endpoint_error, (type(self), str(self), self.status, self.url))

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        self.status = status
        self.url = url
        super().__init__(message)


class FatalEndpointError(EndpointError):
    """The endpoint refused the request in a way no retry or later item can fix (401/403/404)."""

    exit_code = 2


def _rebuild_endpoint_error(
    cls: type[EndpointError], message: str, status: int | None, url: str | None
) -> EndpointError:
    """Unpickle an endpoint error (its status and URL are keyword-only arguments)."""
    return cls(message, status=status, url=url)
