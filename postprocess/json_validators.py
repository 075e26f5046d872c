"""Validators for JSON drafts: that they parse, and that they match a JSON Schema or pydantic model.

Every problem names where in the document it is, as a JSON path (``$.items[2].price``), so the
model can fix that spot instead of rewriting the whole answer. Only the first few mismatches are
listed: a draft with fifty of them needs rewriting, not a longer list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry

from postprocess.references import import_reference
from postprocess.validators import ValidationResult, Validator
from refine.errors import ConfigError
from refine.jsonl import NESTED_TOO_DEEP

__all__ = ["json_parses", "json_schema", "pydantic_model"]

_SHOWN_ERRORS = 5  # mismatches one validator lists before it only counts the rest

_SHOWN_TEXT = 200  # characters of one message, or 60 of a quoted value, before "..."
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


class _ConstantNotJson(ValueError):
    """Python's parser accepts NaN and Infinity; JSON does not."""


def json_parses() -> Validator:
    """A validator that the draft is one JSON document (NaN and Infinity are not JSON)."""

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        problem = _parse(draft)[1]
        return ValidationResult([problem] if problem else [])

    return check


def json_schema(schema: str | Mapping[str, Any], base_dir: Path | None = None) -> Validator:
    """A validator that the draft is JSON matching a JSON Schema (draft 2020-12).

    ``schema`` is a path to a ``.json`` file, relative to ``base_dir`` (the configuration's
    folder) unless absolute, or the schema itself. The schema is checked now. ``format`` is
    asserted (a draft's ``"date"`` must be a date), and ``$ref`` is never fetched over the network.
    """
    if isinstance(schema, str):
        loaded = _load_schema(Path(schema).expanduser(), base_dir)
    elif isinstance(schema, Mapping):
        loaded = dict(schema)
    else:
        raise ConfigError(f"schema must be a path to a .json file or a table, got {schema!r}")
    try:
        Draft202012Validator.check_schema(loaded)
    except SchemaError as exc:
        raise ConfigError(
            f"the schema is not a valid JSON Schema at {exc.json_path}: {_short(exc.message)}"
        ) from None
    validator = Draft202012Validator(
        loaded, registry=Registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        document, problem = _parse(draft)
        if problem:
            return ValidationResult([problem])
        try:
            errors = sorted(validator.iter_errors(document), key=_document_order)
        except RecursionError:  # a recursive schema walks a deep draft level by level
            return ValidationResult([f"the draft is {NESTED_TOO_DEEP} to check against the schema"])
        return _capped(
            f"the JSON does not match the schema at {error.json_path}: {_short(error.message)}"
            for error in errors
        )

    return check


def pydantic_model(model: str) -> Validator:
    """A validator that the draft is JSON that the pydantic model ``"package.module:Model"``
    accepts; the model is imported now, so a typo fails before the first model call."""
    if not isinstance(model, str):
        raise ConfigError(f"model must be a 'package.module:Model' string, got {model!r}")
    target = import_reference(model, f"model {model!r}")
    is_model = isinstance(target, type) and issubclass(target, pydantic.BaseModel)
    if not is_model or target is pydantic.BaseModel:
        raise ConfigError(f"model {model!r} is not a pydantic model class")
    model_class: type[pydantic.BaseModel] = target  # type: ignore[assignment]
    try:
        model_class.model_rebuild()  # resolve forward references now, not on the first draft
    except pydantic.PydanticUserError as exc:
        raise ConfigError(f"model {model!r} is not fully defined: {exc}") from None

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        problem = _parse(draft)[1]
        if problem:
            return ValidationResult([problem])
        try:
            model_class.model_validate_json(draft)
        except pydantic.ValidationError as exc:
            return _capped(_pydantic_problem(error) for error in exc.errors())
        return ValidationResult()

    return check


def _parse(draft: str) -> tuple[Any, str | None]:
    """The parsed document, or the problem that says where parsing failed."""
    if not draft.strip():
        return None, "the draft is empty, but a JSON document is required"
    try:
        return json.loads(draft, parse_constant=_reject_constant), None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return None, f"the draft is not valid JSON: {exc.msg} at {where}"
    except _ConstantNotJson as exc:
        return None, f"the draft is not valid JSON: {exc}"
    except RecursionError:
        return None, "the draft is not valid JSON: it is nested too deeply to parse"


def _reject_constant(name: str) -> Any:
    raise _ConstantNotJson(f"{name} is not a JSON value; use null or a number")


def _load_schema(path: Path, base_dir: Path | None) -> Any:
    """Read a schema file; a relative path is relative to the configuration's folder."""
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the schema file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        problem = f"{exc.msg} at {where}"
        raise ConfigError(f"the schema file {path} is not valid JSON: {problem}") from None
    except RecursionError:
        raise ConfigError(f"the schema file {path} is not valid JSON: {NESTED_TOO_DEEP}") from None


def _document_order(error: ValidationError) -> tuple[tuple[int, int | str], ...]:
    """Sort mismatches by where they are in the document; ties keep the schema's order."""
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path)


def _pydantic_problem(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence with a JSON path; scalar inputs are quoted back."""
    text = f"the JSON does not match the schema at {_json_path(error['loc'])}: {error['msg']}"
    value = error.get("input")
    if error["type"] != "missing" and (value is None or isinstance(value, str | int | float)):
        text += f" (got {_short(json.dumps(value), 60)})"
    return text


def _json_path(loc: Iterable[int | str]) -> str:
    """A pydantic location as the JSON path jsonschema would print: ``$.items[2].price``."""
    parts = ["$"]
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.fullmatch(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part)}]")
    return "".join(parts)


def _capped(problems: Iterable[str]) -> ValidationResult:
    listed = list(problems)
    if len(listed) > _SHOWN_ERRORS:
        more = len(listed) - _SHOWN_ERRORS
        listed = [*listed[:_SHOWN_ERRORS], f"... and {more} more mismatches like these"]
    return ValidationResult(listed)


def _short(text: str, limit: int = _SHOWN_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
