"""Validators: checks on a draft whose problems the next step's ``fix`` prompt shows the model.

A validator is a plain ``Callable[[str, Mapping[str, Any]], ValidationResult]``: it takes the
draft and the item's row (hidden fields such as ``reference`` included) and returns the problems
it found. Each problem is one short sentence the model can act on ("line 3: SyntaxError: expected
':'"), so validators never ``assert`` and never raise on a bad draft: a bad draft is a problem.
Parameters are checked when a validator is built, so a bad one fails before the first model call.

This module holds the result type and the checks on plain text and Python; the checks on JSON
are in :mod:`postprocess.json_validators`, and configuration names them all through
:mod:`postprocess.validator_registry`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from refine.errors import ConfigError

__all__ = [
    "ValidationResult",
    "Validator",
    "length_bounds",
    "python_compiles",
    "regex_must",
    "regex_must_not",
    "required_keywords",
]

_SHOWN_MATCH = 60  # characters of a forbidden match quoted back to the model


@dataclass(frozen=True, init=False)
class ValidationResult:
    """The problems a validator found in a draft; none means the draft passed."""

    problems: tuple[str, ...]

    def __init__(self, problems: Iterable[str] = ()) -> None:
        # Any iterable of sentences will do, but never a bare string: it would split into letters.
        if isinstance(problems, str):
            raise TypeError("problems must be a sequence of strings, not one string")
        checked = tuple(problems)
        for problem in checked:
            if not isinstance(problem, str):
                raise TypeError(f"each problem must be a str, got {type(problem).__name__}")
        object.__setattr__(self, "problems", checked)

    @property
    def ok(self) -> bool:
        """Whether the draft passed (no problems)."""
        return not self.problems

    def __add__(self, other: ValidationResult) -> ValidationResult:
        return ValidationResult(self.problems + other.problems)

    @classmethod
    def combine(cls, results: Iterable[ValidationResult]) -> ValidationResult:
        """All problems of several results, in order."""
        return cls(tuple(problem for result in results for problem in result.problems))


Validator = Callable[[str, Mapping[str, Any]], ValidationResult]
"""The contract of every validator: (draft, row fields) to the problems found in the draft."""

_PASSED = ValidationResult()


def python_compiles() -> Validator:
    """A validator that the draft is Python source that compiles.

    Cleaners are expected to have pulled the code out of any fences already. An empty draft
    fails too: it compiles, but it is never the code that was asked for.
    """

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        if not draft.strip():
            return ValidationResult(["the draft is empty, but Python code is required"])
        try:
            compile(draft, "<draft>", "exec", dont_inherit=True)
        except SyntaxError as exc:  # IndentationError and TabError included
            where = f"line {exc.lineno}: " if exc.lineno else ""
            return ValidationResult([f"{where}{type(exc).__name__}: {exc.msg}"])
        except ValueError as exc:  # null bytes in the source
            return ValidationResult([f"the code cannot be compiled: {exc}"])
        return _PASSED

    return check


def regex_must(pattern: str, message: str | None = None) -> Validator:
    """A validator that the pattern is found somewhere in the draft (``re.search``).

    ``message`` replaces the default problem, which quotes a regex a model may not understand.
    """
    compiled = _compile(pattern)
    _check_message(message)
    problem = message or f"the draft does not match the required pattern '{pattern}'"

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        return _PASSED if compiled.search(draft) else ValidationResult([problem])

    return check


def regex_must_not(pattern: str, message: str | None = None) -> Validator:
    """A validator that the pattern is found nowhere in the draft; the problem quotes the match."""
    compiled = _compile(pattern)
    _check_message(message)

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        found = compiled.search(draft)
        if found is None:
            return _PASSED
        if message:
            return ValidationResult([message])
        line = draft.count("\n", 0, found.start()) + 1
        text = found.group()
        if len(text) > _SHOWN_MATCH:
            text = text[:_SHOWN_MATCH] + "..."
        if not text:  # an empty match, as of 'x*': there is nothing to quote
            return ValidationResult([f"the draft matches the forbidden pattern '{pattern}'"])
        forbidden = f"line {line}, forbidden pattern '{pattern}'"
        return ValidationResult([f"the draft must not contain {text!r} ({forbidden})"])

    return check


def length_bounds(
    min_chars: int | None = None,
    max_chars: int | None = None,
    min_words: int | None = None,
    max_words: int | None = None,
) -> Validator:
    """A validator that the draft's length in characters and words (split on whitespace) is
    within the bounds given; at least one bound is required."""
    bounds = {
        "min_chars": min_chars,
        "max_chars": max_chars,
        "min_words": min_words,
        "max_words": max_words,
    }
    if all(value is None for value in bounds.values()):
        raise ConfigError(f"give at least one of {', '.join(bounds)}")
    for name, value in bounds.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if value is not None and value < 0:
            raise ConfigError(f"{name} must not be negative, got {value}")
    for low, high in ((min_chars, max_chars), (min_words, max_words)):
        if low is not None and high is not None and low > high:
            raise ConfigError(f"the minimum {low} is above the maximum {high}")

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        return ValidationResult(
            [
                *_bound_problems(len(draft), "character", min_chars, max_chars),
                *_bound_problems(len(draft.split()), "word", min_words, max_words),
            ]
        )

    return check


def required_keywords(
    words: Sequence[str] | None = None,
    field: str | None = None,
    case_sensitive: bool = False,
) -> Validator:
    """A validator that each keyword appears in the draft as a whole word or phrase.

    The keywords are either fixed (``words``) or read per item from a row field (``field``)
    holding a list of strings or one string. A keyword's spaces match any run of whitespace.
    """
    if (words is None) == (field is None):
        raise ConfigError("give exactly one of 'words' (a list) or 'field' (a row field name)")
    if not isinstance(case_sensitive, bool):
        raise ConfigError(f"case_sensitive must be true or false, got {case_sensitive!r}")
    flags = 0 if case_sensitive else re.IGNORECASE
    if field is not None:
        if not isinstance(field, str) or not field:
            raise ConfigError(f"field must be the name of a row field, got {field!r}")
        return _field_keywords(field, flags)
    fixed = _keyword_patterns(words, "words", flags, error=ConfigError)

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        return _missing(fixed, draft)

    return check


def _field_keywords(field: str, flags: int) -> Validator:
    """Keywords read from the row; a row without usable keywords is an input bug, so it raises."""

    def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
        if field not in row:
            raise ValueError(f"the row has no field {field!r} to read keywords from")
        return _missing(_keyword_patterns(row[field], field, flags, error=ValueError), draft)

    return check


_Keyword = tuple[str, re.Pattern[str]]


def _keyword_patterns(
    words: object, source: str, flags: int, error: type[Exception]
) -> list[_Keyword]:
    """Compile each keyword into a whole-word pattern; bad keyword lists raise ``error``."""
    if isinstance(words, str):
        words = [words]
    if not isinstance(words, list | tuple) or not all(isinstance(w, str) for w in words):
        raise error(f"{source} must be a list of strings, got {words!r}")
    if not words or not all(w.strip() for w in words):
        raise error(f"{source} must hold at least one keyword and no empty ones, got {words!r}")
    patterns = []
    for word in words:
        body = r"\s+".join(re.escape(part) for part in word.split())
        start = r"(?<!\w)" if re.match(r"\w", word.strip()) else ""
        end = r"(?!\w)" if re.search(r"\w$", word.strip()) else ""
        patterns.append((word.strip(), re.compile(start + body + end, flags)))
    return patterns


def _missing(keywords: list[_Keyword], draft: str) -> ValidationResult:
    missing = [word for word, pattern in keywords if not pattern.search(draft)]
    return ValidationResult(f"missing required keyword {word!r}" for word in missing)


def _bound_problems(count: int, unit: str, low: int | None, high: int | None) -> list[str]:
    """The problem with a count outside [low, high], worded for the model."""
    units = unit if count == 1 else unit + "s"
    if high is not None and count > high:
        return [f"the draft has {count} {units}; at most {high} {_is_are(high)} allowed"]
    if low is not None and count < low:
        return [f"the draft has {count} {units}; at least {low} {_is_are(low)} required"]
    return []


def _is_are(count: int) -> str:
    return "is" if count == 1 else "are"


def _compile(pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"pattern must be a non-empty string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None


def _check_message(message: str | None) -> None:
    if message is not None and (not isinstance(message, str) or not message.strip()):
        raise ConfigError(f"message must be a non-empty string, got {message!r}")
