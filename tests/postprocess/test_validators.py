"""Text and code validators on real drafts with the exact problems the model is shown, and the
result type. The JSON validators and the registry have files of their own."""

from __future__ import annotations

from typing import Any

import pytest

from postprocess.validator_registry import ValidatorCrashed
from postprocess.validators import ValidationResult
from tests.validator_helpers import config_error, one, problems

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
