"""Validators on real drafts with the exact problems the model is shown, and the spec errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from postprocess.json_validators import json_schema
from postprocess.specs import split_spec
from postprocess.validator_registry import (
    NamedValidator,
    ValidatorCrashed,
    ValidatorRegistry,
    ValidatorSpec,
    build_validators,
    default_validators,
    run_validators,
)
from postprocess.validators import ValidationResult, Validator, length_bounds
from refine.errors import ConfigError, RefineError

HELPERS = "tests.validator_helpers"
ORDER_SCHEMA = {
    "type": "object",
    "required": ["customer", "items"],
    "properties": {
        "customer": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "price"],
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
            },
        },
    },
}


def one(spec: ValidatorSpec, base_dir: Path | None = None) -> NamedValidator:
    """Build a single validator from its spec, as a configuration would."""
    (validator,) = build_validators([spec], base_dir=base_dir)
    return validator


def problems(spec: ValidatorSpec, draft: str, row: Mapping[str, Any] | None = None) -> list[str]:
    return list(one(spec)(draft, row or {}).problems)


def config_error(spec: ValidatorSpec, base_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        one(spec, base_dir)
    return str(caught.value)


# --- the result type ---------------------------------------------------------------------------


def test_result_ok_and_combine() -> None:
    passed, first, second = ValidationResult(), ValidationResult(["a"]), ValidationResult(("b",))
    assert passed.ok and not first.ok
    assert ValidationResult.combine([first, passed, second]).problems == ("a", "b")
    assert (first + second).problems == ("a", "b")
    assert ValidationResult.combine([]).ok
    assert ValidationResult(["a"]) == first  # lists are stored as tuples: results compare by value


@pytest.mark.parametrize("bad", ["one string", [1]])
def test_result_rejects_what_is_not_a_list_of_sentences(bad: Any) -> None:
    with pytest.raises(TypeError):
        ValidationResult(bad)


# --- json --------------------------------------------------------------------------------------


@pytest.mark.parametrize("draft", ['{"a": [1, 2.5, null, true]}', "[]", '  "text"\n', "3"])
def test_json_accepts_documents(draft: str) -> None:
    assert problems("json", draft) == []


@pytest.mark.parametrize(
    ("draft", "problem"),
    [
        (
            '{\n  "a": 1,\n  "b": 2,\n}',
            "the draft is not valid JSON: Expecting property name enclosed in double quotes"
            " at line 4, column 1",
        ),
        (
            '{"a": 1} {"b": 2}',
            "the draft is not valid JSON: Extra data at line 1, column 10",
        ),
        (
            "{'a': 1}",
            "the draft is not valid JSON: Expecting property name enclosed in double "
            "quotes at line 1, column 2",
        ),
        (
            '{"x": NaN}',
            "the draft is not valid JSON: NaN is not a JSON value; use null or a number",
        ),
        ("  \n", "the draft is empty, but a JSON document is required"),
        ("[" * 100_000, "the draft is not valid JSON: it is nested too deeply to parse"),
    ],
)
def test_json_says_where_parsing_failed(draft: str, problem: str) -> None:
    assert problems("json", draft) == [problem]


# --- json_schema -------------------------------------------------------------------------------


def test_json_schema_inline_accepts_a_matching_draft() -> None:
    draft = '{"customer": "Ada", "items": [{"name": "tea", "price": 3.5}]}'
    assert problems({"name": "json_schema", "schema": ORDER_SCHEMA}, draft) == []


def test_json_schema_names_the_path_of_each_mismatch_in_document_order() -> None:
    draft = json.dumps(
        {
            "customer": 7,
            "items": [
                {"name": "tea", "price": 3.5},
                {"name": "cake"},
                {"name": "jam", "price": "abc"},
            ],
        }
    )
    assert problems({"name": "json_schema", "schema": ORDER_SCHEMA}, draft) == [
        "the JSON does not match the schema at $.customer: 7 is not of type 'string'",
        "the JSON does not match the schema at $.items[1]: 'price' is a required property",
        "the JSON does not match the schema at $.items[2].price: 'abc' is not of type 'number'",
    ]


def test_json_schema_lists_only_the_first_mismatches() -> None:
    spec = {"name": "json_schema", "schema": {"type": "array", "items": {"type": "integer"}}}
    found = problems(spec, json.dumps([str(i) for i in range(12)]))
    assert found[0] == "the JSON does not match the schema at $[0]: '0' is not of type 'integer'"
    assert found[4] == "the JSON does not match the schema at $[4]: '4' is not of type 'integer'"
    assert found[5:] == ["... and 7 more mismatches like these"]


def test_json_schema_reports_bad_json_as_the_json_validator_does() -> None:
    spec = {"name": "json_schema", "schema": ORDER_SCHEMA}
    assert problems(spec, "Sure! {") == [
        "the draft is not valid JSON: Expecting value at line 1, column 1"
    ]


def test_json_schema_checks_formats_and_local_refs() -> None:
    schema = {
        "$defs": {"day": {"type": "string", "format": "date"}},
        "type": "object",
        "properties": {"due": {"$ref": "#/$defs/day"}},
    }
    spec = {"name": "json_schema", "schema": schema}
    assert problems(spec, '{"due": "2024-05-01"}') == []
    assert problems(spec, '{"due": "next Tuesday"}') == [
        "the JSON does not match the schema at $.due: 'next Tuesday' is not a 'date'"
    ]


def test_json_schema_from_a_file_relative_to_the_base_dir(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.json").write_text(json.dumps(ORDER_SCHEMA), encoding="utf-8")
    validator = one({"name": "json_schema", "schema": "schemas/order.json"}, base_dir=tmp_path)
    assert validator('{"customer": "Ada", "items": []}', {}).ok
    assert validator('{"items": []}', {}).problems == (
        "the JSON does not match the schema at $: 'customer' is a required property",
    )
    absolute = str(tmp_path / "schemas" / "order.json")
    assert one({"name": "json_schema", "schema": absolute})('{"items": 1}', {}).problems == (
        "the JSON does not match the schema at $: 'customer' is a required property",
        "the JSON does not match the schema at $.items: 1 is not of type 'array'",
    )


def test_json_schema_errors_at_build_time(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    assert config_error({"name": "json_schema", "schema": "missing.json"}, tmp_path) == (
        f"validator 'json_schema': cannot read the schema file {missing}: "
        f"[Errno 2] No such file or directory: '{missing}'"
    )
    (tmp_path / "broken.json").write_text('{"type": "object",}', encoding="utf-8")
    assert config_error({"name": "json_schema", "schema": "broken.json"}, tmp_path) == (
        f"validator 'json_schema': the schema file {tmp_path / 'broken.json'} is not valid JSON: "
        "Expecting property name enclosed in double quotes at line 1, column 19"
    )
    assert config_error({"name": "json_schema", "schema": {"type": "strng"}}) == (
        "validator 'json_schema': the schema is not a valid JSON Schema at $.type: "
        "'strng' is not valid under any of the given schemas"
    )
    assert config_error({"name": "json_schema", "schema": 3}) == (
        "validator 'json_schema': schema must be a path to a .json file or a table, got 3"
    )


def test_json_schema_never_fetches_a_remote_ref() -> None:
    validator = one({"name": "json_schema", "schema": {"$ref": "https://example.com/s.json"}})
    with pytest.raises(ValidatorCrashed, match="validator 'json_schema' crashed: .*Unresolvable"):
        validator("{}", {})


# --- pydantic_model ----------------------------------------------------------------------------

ORDER = {"name": "pydantic_model", "model": f"{HELPERS}:Order"}


def test_pydantic_model_accepts_a_matching_draft() -> None:
    assert problems(ORDER, '{"customer": "Ada", "items": [{"name": "tea", "price": "3.5"}]}') == []


def test_pydantic_model_names_loc_and_message() -> None:
    draft = json.dumps(
        {"items": [{"name": "tea", "price": 3.5}, {"name": "jam", "price": "abc"}], "x-y": 1}
    )
    assert problems(ORDER, draft) == [
        "the JSON does not match the schema at $.customer: Field required",
        "the JSON does not match the schema at $.items[1].price: Input should be a valid number,"
        ' unable to parse string as a number (got "abc")',
    ]
    assert problems(ORDER, '{"customer": "Ada", "items": []}') == [
        "the JSON does not match the schema at $.items: List should have at least 1 item after"
        " validation, not 0",
    ]
    assert problems(ORDER, "[1]") == [
        "the JSON does not match the schema at $: Input should be an object"
    ]
    assert problems(ORDER, "{oops}") == [
        "the draft is not valid JSON: Expecting property name enclosed in double quotes"
        " at line 1, column 2"
    ]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "tests.no_such_module:Model",
            "validator 'pydantic_model': model 'tests.no_such_module:Model': cannot import "
            "'tests.no_such_module': No module named 'tests.no_such_module'",
        ),
        (
            f"{HELPERS}:Missing",
            f"validator 'pydantic_model': model '{HELPERS}:Missing': module '{HELPERS}' "
            "has no 'Missing'",
        ),
        (
            f"{HELPERS}:crashes",
            f"validator 'pydantic_model': model '{HELPERS}:crashes' is not a pydantic model class",
        ),
        (
            "Order",
            "validator 'pydantic_model': model 'Order': 'Order' is not of the form "
            "'package.module:name'",
        ),
    ],
)
def test_pydantic_model_errors_at_build_time(model: str, message: str) -> None:
    assert config_error({"name": "pydantic_model", "model": model}) == message


# --- python_compiles ---------------------------------------------------------------------------


def test_python_compiles_accepts_code() -> None:
    assert problems("python_compiles", "def add(a, b):\n    return a + b\n") == []


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("import os\n\ndef f()\n    pass\n", "line 3: SyntaxError: expected ':'"),
        ("x = 1\nreturn x\n", "line 2: SyntaxError: 'return' outside function"),
        (
            "if x:\nprint(x)\n",
            "line 2: IndentationError: expected an indented block after 'if' statement on line 1",
        ),
        ("s = 'abc\n", "line 1: SyntaxError: unterminated string literal (detected at line 1)"),
        ("\n \n", "the draft is empty, but Python code is required"),
    ],
)
def test_python_compiles_gives_line_and_message(code: str, problem: str) -> None:
    assert problems("python_compiles", code) == [problem]


# --- regex_must / regex_must_not ---------------------------------------------------------------


def test_regex_must() -> None:
    spec = {"name": "regex_must", "pattern": r"^Answer: \d+$"}
    assert problems(spec, "Answer: 42") == []
    missing = [r"the draft does not match the required pattern '^Answer: \d+$'"]
    assert problems(spec, "Answer: forty-two") == missing
    assert problems(spec, "Working...\nAnswer: 42") == missing  # ^ is the draft's start
    per_line = {**spec, "pattern": r"(?m)^Answer: \d+$"}  # unless (?m) makes it a line's
    assert problems(per_line, "x\nAnswer: 42\ny") == []
    assert problems({"name": "regex_must", "pattern": "42"}, "so: 42.") == []  # search, not match
    custom = {**spec, "message": "end with a line 'Answer: <number>'"}
    assert problems(custom, "42") == ["end with a line 'Answer: <number>'"]


def test_regex_must_not_quotes_the_first_match() -> None:
    spec = {"name": "regex_must_not", "pattern": r"(?i)as an ai\b"}
    assert problems(spec, "Paris is the capital.") == []
    assert problems(spec, "Paris.\nAs an AI, I think so. As an AI...") == [
        r"the draft must not contain 'As an AI' (line 2, forbidden pattern '(?i)as an ai\b')"
    ]
    assert problems({"name": "regex_must_not", "pattern": r"\d+"}, "n = " + "7" * 80) == [
        f"the draft must not contain '{'7' * 60}...' (line 1, forbidden pattern '\\d+')"
    ]
    assert problems({"name": "regex_must_not", "pattern": "x*"}, "abc") == [
        "the draft matches the forbidden pattern 'x*'"
    ]
    custom = {**spec, "message": "do not mention that you are an AI"}
    assert problems(custom, "As an AI") == ["do not mention that you are an AI"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"pattern": "(unclosed"},
            "validator 'regex_must': pattern '(unclosed' is not a valid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        ({"pattern": ""}, "validator 'regex_must': pattern must be a non-empty string, got ''"),
        (
            {"pattern": "x", "message": " "},
            "validator 'regex_must': message must be a non-empty string, got ' '",
        ),
    ],
)
def test_regex_errors_at_build_time(params: dict[str, Any], message: str) -> None:
    assert config_error({"name": "regex_must", **params}) == message


# --- length ------------------------------------------------------------------------------------

WORDS_412 = " ".join(["word"] * 412)


@pytest.mark.parametrize(
    ("bounds", "draft", "found"),
    [
        ({"max_words": 150}, WORDS_412, ["the draft has 412 words; at most 150 are allowed"]),
        ({"max_words": 150}, " ".join(["word"] * 150), []),
        ({"min_words": 50}, "Too short.", ["the draft has 2 words; at least 50 are required"]),
        ({"min_words": 2}, "One", ["the draft has 1 word; at least 2 are required"]),
        ({"max_words": 1}, "One two", ["the draft has 2 words; at most 1 is allowed"]),
        ({"max_chars": 5}, "abcdef", ["the draft has 6 characters; at most 5 are allowed"]),
        ({"min_chars": 1}, "", ["the draft has 0 characters; at least 1 is required"]),
        (
            {"max_chars": 10, "min_words": 3},
            "abcdefghijkl",
            [
                "the draft has 12 characters; at most 10 are allowed",
                "the draft has 1 word; at least 3 are required",
            ],
        ),
    ],
)
def test_length(bounds: dict[str, int], draft: str, found: list[str]) -> None:
    assert problems({"name": "length", **bounds}, draft) == found


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "give at least one of min_chars, max_chars, min_words, max_words"),
        ({"max_words": "150"}, "max_words must be a whole number, got '150'"),
        ({"max_words": True}, "max_words must be a whole number, got True"),
        ({"min_chars": -1}, "min_chars must not be negative, got -1"),
        ({"min_words": 10, "max_words": 5}, "the minimum 10 is above the maximum 5"),
    ],
)
def test_length_errors_at_build_time(params: dict[str, Any], message: str) -> None:
    assert config_error({"name": "length", **params}) == f"validator 'length': {message}"


# --- keywords ----------------------------------------------------------------------------------


def test_keywords_match_whole_words_ignoring_case_by_default() -> None:
    spec = {"name": "keywords", "words": ["Paris", "Eiffel Tower", "C++"]}
    assert problems(spec, "paris has the eiffel\n  tower; c++ too.") == []
    assert problems(spec, "Parisian food near the Eiffel Towers. C+") == [
        "missing required keyword 'Paris'",
        "missing required keyword 'Eiffel Tower'",
        "missing required keyword 'C++'",
    ]
    strict = {**spec, "case_sensitive": True}
    assert problems(strict, "paris, Eiffel Tower, C++") == ["missing required keyword 'Paris'"]


def test_keywords_from_a_row_field() -> None:
    spec = {"name": "keywords", "field": "must_mention"}
    row = {"must_mention": ["Lyon", "Rhône"], "id": "q1"}
    assert problems(spec, "Lyon lies on the Rhône.", row) == []
    assert problems(spec, "Lyon is in France.", row) == ["missing required keyword 'Rhône'"]
    assert problems(spec, "Lyon", {"must_mention": "Lyon"}) == []


def test_keywords_with_an_unusable_row_field_crash_rather_than_blame_the_draft() -> None:
    validator = one({"name": "keywords", "field": "must_mention"})
    with pytest.raises(ValidatorCrashed) as caught:
        validator("text", {"id": "q1"})
    assert str(caught.value) == (
        "validator 'keywords' crashed: ValueError: the row has no field 'must_mention' to read "
        "keywords from"
    )
    with pytest.raises(ValidatorCrashed, match="must_mention must be a list of strings, got 3"):
        validator("text", {"must_mention": 3})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "give exactly one of 'words' (a list) or 'field' (a row field name)"),
        ({"words": ["a"], "field": "f"}, "give exactly one of 'words' (a list) or 'field'"),
        ({"words": []}, "words must hold at least one keyword and no empty ones, got []"),
        ({"words": ["ok", " "]}, "words must hold at least one keyword and no empty ones"),
        ({"words": [1]}, "words must be a list of strings, got [1]"),
        ({"words": ["a"], "case_sensitive": "no"}, "case_sensitive must be true or false"),
    ],
)
def test_keywords_errors_at_build_time(params: dict[str, Any], message: str) -> None:
    assert config_error({"name": "keywords", **params}).startswith(
        f"validator 'keywords': {message}"
    )


# --- specs and the registry --------------------------------------------------------------------


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
            f"validator '{HELPERS}:cites_reference' is a user function and takes no parameters; "
            "got strict",
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
    assert json_schema({"type": "null"})("null", {}).ok
    with pytest.raises(ConfigError, match="give at least one of"):
        length_bounds()


def test_split_spec_keeps_parameters() -> None:
    assert split_spec(" json ", "validator") == ("json", {})
    assert split_spec({"name": "length", "max_words": 3}, "validator") == (
        "length",
        {"max_words": 3},
    )
