"""Validator specs and the registry: unknown names, bad parameters, user validators by import
path, crashing ones, and the extension point for more factories."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from postprocess.specs import ParsedSpec
from postprocess.validator_registry import (
    ValidatorCrashed,
    ValidatorRegistry,
    ValidatorSpec,
    build_validators,
    default_validators,
    run_validators,
)
from postprocess.validators import ValidationResult, Validator, length_bounds
from refine.errors import ConfigError, RefineError
from tests.validator_helpers import HELPERS, config_error, one


def test_unknown_name_lists_the_valid_names() -> None:
    assert config_error("json_shcema") == (
        "unknown validator 'json_shcema'; known validators: json, json_schema, keywords, length, "
        "pydantic_model, python_compiles, regex_must, regex_must_not; a user validator is named "
        "as 'package.module:function'"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "length", "max_word": 150},
            "validator 'length': unknown parameter 'max_word'; accepted parameters: max_chars, "
            "max_words, min_chars, min_words",
        ),
        (
            "regex_must",
            "validator 'regex_must': missing parameter 'pattern'; accepted parameters: message, "
            "pattern",
        ),
        (
            {"name": "json_schema", "schema": {}, "base_dir": "/etc"},
            "validator 'json_schema': unknown parameter 'base_dir'; accepted parameters: schema",
        ),
        (
            {"name": "json", "strict": True, "x": 1},
            "validator 'json': unknown parameters 'strict', 'x'; accepted parameters: none",
        ),
        ({"max_words": 3}, "a validator table needs a 'name' key naming the validator, got "),
        (3, "a validator is a name or a table with a 'name' key, got 3"),
    ],
)
def test_bad_specs(spec: Any, message: str) -> None:
    assert config_error(spec).startswith(message)


def test_specs_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match="validators must be a list of specs, got 'json'"):
        build_validators("json")  # type: ignore[arg-type]
    assert build_validators([]) == []


def test_specs_mix_names_tables_and_user_functions() -> None:
    validators = build_validators(
        ["json", {"name": "length", "max_chars": 20}, f"{HELPERS}:cites_reference"]
    )
    assert [v.name for v in validators] == ["json", "length", f"{HELPERS}:cites_reference"]
    row = {"reference": "42", "id": "q7"}
    result = run_validators(validators, "The answer is forty-two.", row)
    assert result.problems == (
        "the draft is not valid JSON: Expecting value at line 1, column 1",
        "the draft has 24 characters; at most 20 are allowed",
        "the draft does not quote the reference '42'",
    )
    assert run_validators(validators, '{"answer": 42}', row).ok


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            f"{HELPERS}:NOT_CALLABLE",
            f"validator '{HELPERS}:NOT_CALLABLE' is a int, not a function",
        ),
        (
            f"{HELPERS}:takes_draft_only",
            f"validator '{HELPERS}:takes_draft_only' must take (draft, row), but its signature is "
            "(draft: 'str') -> 'ValidationResult'",
        ),
        (
            {"name": f"{HELPERS}:cites_reference", "strict": True},
            f"validator '{HELPERS}:cites_reference' is a user validator and takes no parameters, "
            "got strict; register a factory to configure one",
        ),
        (
            "tests.nowhere:check",
            "validator 'tests.nowhere:check': cannot import 'tests.nowhere': No module named "
            "'tests.nowhere'",
        ),
    ],
)
def test_user_validator_errors_at_build_time(spec: ValidatorSpec, message: str) -> None:
    assert config_error(spec) == message


def test_a_crashing_user_validator_is_an_error_not_a_problem() -> None:
    validator = one(f"{HELPERS}:crashes")
    with pytest.raises(ValidatorCrashed) as caught:
        run_validators([one("json"), validator], "{}", {"id": "q1"})
    error = caught.value
    assert isinstance(error, RefineError)
    assert str(error) == f"validator '{HELPERS}:crashes' crashed: KeyError: 'missing'"
    assert error.validator == f"{HELPERS}:crashes"
    assert isinstance(error.cause, KeyError) and error.__cause__ is error.cause


def test_a_user_validator_that_returns_the_wrong_type_is_an_error() -> None:
    with pytest.raises(ValidatorCrashed) as caught:
        one(f"{HELPERS}:returns_list")("draft", {})
    assert str(caught.value) == (
        f"validator '{HELPERS}:returns_list' crashed: it returned list, but validators must "
        "return ValidationResult"
    )


def test_registered_factories_extend_a_fresh_registry(tmp_path: Path) -> None:
    """The extension point the sandboxed tests validator uses: a factory closing over a service;
    a factory declaring ``base_dir`` is given the configuration's folder."""
    seen: list[Path | None] = []

    def passes_tests(timeout_s: float = 5.0, base_dir: Path | None = None) -> Validator:
        seen.append(base_dir)

        def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
            failed = [test for test in row["tests"] if test not in draft]
            return ValidationResult(f"test {test!r} failed" for test in failed)

        return check

    registry = default_validators()
    registry.register("passes_tests", passes_tests)
    (validator,) = build_validators(
        [{"name": "passes_tests", "timeout_s": 2}], base_dir=tmp_path, registry=registry
    )
    assert seen == [tmp_path]
    assert validator("assert f(1)", {"tests": ["assert f(1)", "assert f(2)"]}).problems == (
        "test 'assert f(2)' failed",
    )
    assert "passes_tests" in registry and "passes_tests" in registry.copy()
    assert "passes_tests" not in default_validators()  # defaults are built fresh each time
    with pytest.raises(ConfigError, match="validator names must be identifiers, got 'a:b'"):
        registry.register("a:b", passes_tests)


def test_a_factory_returning_a_non_callable_is_a_config_error() -> None:
    registry = ValidatorRegistry({"broken": lambda: "not a validator"})
    with pytest.raises(ConfigError, match="validator 'broken': its factory returned str"):
        registry.build("broken")


def test_factories_can_be_called_directly() -> None:
    assert length_bounds(max_words=2)("one two three", {}).problems == (
        "the draft has 3 words; at most 2 are allowed",
    )
    with pytest.raises(ConfigError, match="give at least one of"):
        length_bounds()


def test_parse_keeps_the_name_and_parameters() -> None:
    registry = default_validators()
    assert registry.parse(" json ") == ParsedSpec("json", {}, " json ")
    assert registry.parse({"name": "length", "max_words": 3}) == ParsedSpec(
        "length", {"max_words": 3}, "length"
    )
    assert registry.parse(f"{HELPERS}:cites_reference") == ParsedSpec(
        f"{HELPERS}:cites_reference", {}, f"{HELPERS}:cites_reference", reference=True
    )
