"""The error hierarchy of prefect-refine.

Every error a user can cause or meet derives from :class:`RefineError`, so the CLI turns each one
into a clear message and an exit code instead of a traceback. Classes without a module beside
them live here; the others live with the code that raises them (moving one would break
unpickling a shard's error by its module path)::

    RefineError
    ├── ConfigError             bad settings, unknown names, a bad flag value
    │   ├── SandboxUnavailable  bubblewrap cannot run here, so no generated code runs
    │   │                         (postprocess.sandbox.command)
    │   └── LocalModelError     the local model server did not start; its last log lines
    │                             (flows.local.server)
    ├── InputError              a dataset row that cannot be used (file, line, field)
    │   └── MissingFieldsError  rows that lack variables their templates use (all listed at once)
    ├── TemplateError           a template that is missing, broken, unsafe or renders too much
    ├── EndpointError           a model call that failed after its retries (exit code 1)
    │   ├── FatalEndpointError  401/403/404: no later call can succeed, so the run stops once
    │   └── BatchNotFound       the provider knows no such batch or file: its requests are
    │                             asked again (flows.llm.batch_api)
    ├── InvalidTests            a row's ``tests`` do not parse or hold no assert
    │                             (postprocess.sandbox.models)
    ├── ValidatorCrashed        a validator raised or returned no ValidationResult: its item fails
    │                             (postprocess.validator_registry)
    ├── CheckCrashed            a reward raised on an item: its item fails (flows.loop.checks)
    └── CleanerFailed           a cleaner raised on an answer: its item fails (flows.loop.refiner)

Not RefineErrors, on purpose, because they end nothing: ``DraftRejected``
(postprocess.filters, a filter refused a draft: a problem of its step) and
``RewardUnavailable`` (postprocess.rewards, a reward cannot be computed for an item: a note).
``tests/test_error_tree.py`` fails when a RefineError subclass is missing from this drawing.

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
    "first_error",
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


def first_error(group: BaseExceptionGroup[Any]) -> Any:
    """The first exception of a (nested) exception group, as ``asyncio.TaskGroup`` raises them:
    the one error a run reports when one task's failure cancelled its siblings."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
