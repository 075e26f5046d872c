"""The JSON validators (json, json_schema, pydantic_model) on real drafts, with the exact
problems the model is shown, and their errors at build time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postprocess.json_validators import json_schema
from postprocess.validator_registry import ValidatorCrashed
from tests.validator_helpers import HELPERS, config_error, one, problems

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


def test_json_schema_can_be_built_directly() -> None:
    assert json_schema({"type": "null"})("null", {}).ok


RECURSIVE_SCHEMA = {
    "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
    "$ref": "#/$defs/n",
}


def test_a_draft_too_deep_to_check_against_a_recursive_schema_is_a_problem() -> None:
    spec = {"name": "json_schema", "schema": RECURSIVE_SCHEMA}
    assert problems(spec, "[" * 900 + "]" * 900) == [
        "the draft is nested too deep to check against the schema"
    ]
    assert problems(spec, "[[]]") == []


def test_a_schema_file_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert config_error({"name": "json_schema", "schema": "deep.json"}, tmp_path) == (
        f"validator 'json_schema': the schema file {tmp_path / 'deep.json'} is not valid JSON: "
        "nested too deep"
    )
