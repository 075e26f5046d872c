"""Code the validator tests name by import path (``tests.validator_helpers:...``), as a user's
configuration would (a pydantic model, user validators good and broken), and the tests' helpers
that build a validator from its spec."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from postprocess.validator_registry import NamedValidator, ValidatorSpec, build_validators
from postprocess.validators import ValidationResult
from refine.errors import ConfigError

HELPERS = "tests.validator_helpers"
"""This module's import path, as configurations name the code in it."""


def one(spec: ValidatorSpec, base_dir: Path | None = None) -> NamedValidator:
    """Build a single validator from its spec, as a configuration would."""
    (validator,) = build_validators([spec], base_dir=base_dir)
    return validator


def problems(spec: ValidatorSpec, draft: str, row: Mapping[str, Any] | None = None) -> list[str]:
    """The problems the validator a spec names finds in a draft."""
    return list(one(spec)(draft, row or {}).problems)


def config_error(spec: ValidatorSpec, base_dir: Path | None = None) -> str:
    """The message of the ConfigError that building the spec raises."""
    with pytest.raises(ConfigError) as caught:
        one(spec, base_dir)
    return str(caught.value)


class Item(BaseModel):
    """One line of an order."""

    name: str
    price: float


class Order(BaseModel):
    """What a model must answer with for the pydantic_model validator tests."""

    customer: str
    items: list[Item] = Field(min_length=1)


def cites_reference(draft: str, row: Mapping[str, Any]) -> ValidationResult:
    """A user validator that reads a hidden row field: the draft must quote the reference."""
    reference = str(row.get("reference", ""))
    if reference and reference not in draft:
        return ValidationResult([f"the draft does not quote the reference {reference!r}"])
    return ValidationResult()


def crashes(draft: str, row: Mapping[str, Any]) -> ValidationResult:
    """A user validator with a bug: it indexes a row field that is not there."""
    return ValidationResult([row["missing"]])


def returns_list(draft: str, row: Mapping[str, Any]) -> list[str]:
    """A user validator that breaks the contract by returning bare strings."""
    return ["problems belong in a ValidationResult"]


def takes_draft_only(draft: str) -> ValidationResult:
    """Not a validator: it cannot be called with the row."""
    return ValidationResult()


NOT_CALLABLE = 42
