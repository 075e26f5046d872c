"""Template files as Jinja reads them, and its failures as errors that name the file and line.

A template is configuration: a file that is not UTF-8, a syntax error, an undefined name or a
sandbox breach must say which file and which line, never end in a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

import jinja2
from jinja2.sandbox import SecurityError

from refine.errors import TemplateError

__all__ = ["Utf8Loader", "template_error"]


class Utf8Loader(jinja2.FileSystemLoader):
    """A file loader whose undecodable file is a TemplateError naming it, not a traceback."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            return super().get_source(environment, template)
        except UnicodeDecodeError as exc:
            pieces = jinja2.loaders.split_template_path(template)
            found = (os.path.join(folder, *pieces) for folder in self.searchpath)
            path = next((p for p in found if os.path.isfile(p)), template)
            lines = exc.object[: exc.start].split(b"\n")
            where = f"line {len(lines)}, byte {len(lines[-1]) + 1}"
            raise TemplateError(
                f"template {template} ({path}) is not UTF-8 ({where}): save it as UTF-8"
            ) from None


def template_error(name: str, exc: BaseException) -> TemplateError:
    """Turn a Jinja or Python error into a TemplateError naming the file and line at fault."""
    where = _location(exc)
    kinds = (
        (SecurityError, "breaks the sandbox"),
        (jinja2.UndefinedError, "uses an undefined variable"),
        (jinja2.TemplateSyntaxError, "does not parse"),
        (jinja2.TemplateNotFound, "includes a missing template"),
    )
    kind = next((text for cls, text in kinds if isinstance(exc, cls)), "failed")
    return TemplateError(f"template {name} {kind} ({where}): {exc}")


def _location(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name}, line {exc.lineno}"
    # Jinja rewrites tracebacks so template frames carry the file name and template line.
    found: TracebackType | None = None
    tb = exc.__traceback__
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = tb
        tb = tb.tb_next
    if found is None:
        return "line unknown"
    return f"{found.tb_frame.f_code.co_filename}, line {found.tb_lineno}"
