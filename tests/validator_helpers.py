"""Code the validator tests name by import path (``tests.validator_helpers:...``), as a user's
configuration would: a pydantic model, user validators good and broken."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from postprocess.validators import ValidationResult


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
