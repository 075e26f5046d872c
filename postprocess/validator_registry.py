"""Name validators in configuration: a registry of factories and the specs that pick them.

Validators are named by the specs every registry reads (see :mod:`postprocess.specs`): a
registered name (``"python_compiles"``), a table with a ``name`` key and the factory's parameters
(``{"name": "length", "max_words": 150}``, as TOML ``[[validators]]`` gives it), or
``"package.module:function"`` naming a user validator to import. Every spec is built up
front, so an unknown name, a misspelt parameter, a bad regex or an unreadable schema fails before
the first model call. The registry is an object built fresh by :func:`default_validators` for each
run, never a mutated module global; more factories (the sandboxed tests validator) are added to it
with :meth:`ValidatorRegistry.register`.

A validator that raises, or returns something other than a
:class:`~postprocess.validators.ValidationResult`, has a bug the model cannot fix: calling it
through :class:`NamedValidator` turns that into :class:`ValidatorCrashed`, never into a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postprocess.json_validators import json_parses, json_schema, pydantic_model
from postprocess.specs import FactoryRegistry
from postprocess.validators import (
    ValidationResult,
    Validator,
    length_bounds,
    python_compiles,
    regex_must,
    regex_must_not,
    required_keywords,
)
from refine.errors import ConfigError, RefineError

__all__ = [
    "NamedValidator",
    "ValidatorCrashed",
    "ValidatorFactory",
    "ValidatorRegistry",
    "ValidatorSpec",
    "build_validators",
    "default_validators",
    "run_validators",
]

ValidatorFactory = Callable[..., Validator]
"""Builds a validator from a spec's parameters, passed as keyword arguments. A factory that
declares a ``base_dir`` parameter also gets the configuration's folder, to resolve paths."""

ValidatorSpec = str | Mapping[str, Any]
"""A validator as configured: a name, ``"package.module:function"``, or a table with ``name``."""

_BASE_DIR = "base_dir"


class ValidatorCrashed(RefineError):
    """A validator raised or broke its contract while judging a draft.

    This is a bug in the validator (or a row it cannot read), not a problem with the draft, so
    it is never shown to the model: the engine fails the item and reports this message, which
    names the validator. ``cause`` is the exception it raised, if any.
    """

    def __init__(self, validator: str, reason: str, cause: Exception | None = None) -> None:
        self.validator = validator
        self.cause = cause
        super().__init__(f"validator {validator!r} crashed: {reason}")


@dataclass(frozen=True)
class NamedValidator:
    """A built validator with the name its spec gave it, so errors and logs can say which."""

    name: str
    validator: Validator

    def __call__(self, draft: str, row: Mapping[str, Any]) -> ValidationResult:
        try:
            result = self.validator(draft, row)
        except Exception as exc:
            raise ValidatorCrashed(self.name, f"{type(exc).__name__}: {exc}", exc) from exc
        if not isinstance(result, ValidationResult):
            kind = type(result).__name__
            raise ValidatorCrashed(
                self.name, f"it returned {kind}, but validators must return ValidationResult"
            )
        return result


def run_validators(
    validators: Sequence[NamedValidator], draft: str, row: Mapping[str, Any]
) -> ValidationResult:
    """Run every validator, not stopping at the first failure, so one fix step sees all problems."""
    return ValidationResult.combine(validator(draft, row) for validator in validators)


class ValidatorRegistry(FactoryRegistry[ValidatorFactory]):
    """Maps validator names to factories and turns specs into validators."""

    kind = "validator"

    def build(self, spec: ValidatorSpec, base_dir: Path | None = None) -> NamedValidator:
        """The validator a spec names; unknown names fail with the list of known ones."""
        parsed, validator = self.build_spec(spec, **{_BASE_DIR: base_dir})
        return NamedValidator(parsed.name, validator)

    def build_all(
        self, specs: Sequence[ValidatorSpec], base_dir: Path | None = None
    ) -> list[NamedValidator]:
        """Build every spec up front, so a mistake fails before the first model call."""
        if isinstance(specs, str | Mapping):
            raise ConfigError(f"validators must be a list of specs, got {specs!r}")
        return [self.build(spec, base_dir) for spec in specs]


def default_validators() -> ValidatorRegistry:
    """A fresh registry holding the built-in validators."""
    return ValidatorRegistry(
        {
            "json": json_parses,
            "json_schema": json_schema,
            "pydantic_model": pydantic_model,
            "python_compiles": python_compiles,
            "regex_must": regex_must,
            "regex_must_not": regex_must_not,
            "length": length_bounds,
            "keywords": required_keywords,
        }
    )


def build_validators(
    specs: Sequence[ValidatorSpec],
    base_dir: Path | None = None,
    registry: ValidatorRegistry | None = None,
) -> list[NamedValidator]:
    """Build validators from specs, using the built-in ones unless a registry is given.

    ``base_dir`` is the configuration file's folder: relative schema paths are resolved from it.
    """
    return (registry or default_validators()).build_all(specs, base_dir)
