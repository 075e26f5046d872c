"""Odd values and odd text on their way into a prompt: objects and lists show as JSON, a field a
template needs must hold a value, and text that is not UTF-8 or not valid Unicode is refused
with the file it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.config.run import build_run_config
from flows.loop.preflight import load_input
from prompts import ENGINE_VARIABLES, build_environment, check_rows, load_examples
from prompts.values import empty_value, not_text, visible_text
from refine.errors import InputError, MissingFieldsError, TemplateError


def _write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# -- how values print ---------------------------------------------------------------------------


def test_objects_lists_and_booleans_print_as_json_in_every_template(tmp_path: Path) -> None:
    _write(tmp_path, "mine/initial.j2", "{{ o }}|{{ l }}|{{ t }}|{{ n }}|{{ i }}|{{ f }}|{{ s }}")
    env = build_environment([tmp_path])
    values = {
        "o": {"a": 1, "é": [True, None]},
        "l": ["x", "y"],
        "t": True,
        "n": None,
        "i": 3,
        "f": 0.5,
        "s": "text",
    }
    assert env.render("mine/initial.j2", values) == (
        '{"a": 1, "é": [true, null]}|["x", "y"]|true||3|0.5|text'
    )


def test_a_packaged_template_shows_an_object_field_as_json() -> None:
    env = build_environment()
    variables = {"text": {"title": "Ferry", "tags": ["sea", "café"]}, "x": {}, "task": "summarize"}
    rendered = env.render("summarize/input.j2", variables)
    assert '{"title": "Ferry", "tags": ["sea", "café"]}' in rendered
    assert "'title'" not in rendered


# -- fields a template needs hold a value -----------------------------------------------------


def test_a_needed_field_that_holds_no_value_is_reported_like_a_missing_one(tmp_path: Path) -> None:
    _write(tmp_path, "qa/initial.j2", "{{ question }} {{ context }} {{ note }}")
    _write(tmp_path, "qa/refine.j2", "{{ question }}")
    rows: list[tuple[int, dict[str, object]]] = [  # context is optional: filled in as None
        (1, {"question": "fine", "context": None, "note": "NaN"}),
        (2, {"question": None, "context": None, "note": "n"}),
        (3, {"question": float("nan"), "context": None, "note": "n"}),
        (4, {"question": "", "context": None, "note": "n"}),
        (5, {"question": " \t\n", "context": None, "note": "n"}),
        (6, {"question": " NaN ", "context": None, "note": "#N/A"}),
        (7, {"question": ["a list"], "context": None, "note": 0}),  # a value, though not text
    ]
    with pytest.raises(MissingFieldsError) as caught:
        check_rows(
            build_environment([tmp_path]),
            "qa",
            rows,
            set(ENGINE_VARIABLES),
            Path("d.csv"),
            optional={"context"},
            missing_values={"NaN", "#N/A"},
        )
    found = [(p.line, p.field, p.message) for p in caught.value.problems]
    uses = "but template qa/initial.j2, qa/refine.j2 uses it"
    assert found == [
        (1, "note", "looks like a missing value 'NaN', but template qa/initial.j2 uses it"),
        (2, "question", f"is null, {uses}"),
        (3, "question", f"is NaN, {uses}"),
        (4, "question", f"is empty, {uses}"),
        (5, "question", f"holds only whitespace, {uses}"),
        (6, "note", "looks like a missing value '#N/A', but template qa/initial.j2 uses it"),
        (6, "question", f"looks like a missing value 'NaN', {uses}"),
    ]


def test_missing_value_spellings_are_text_unless_named(tmp_path: Path) -> None:
    _write(tmp_path, "mine/initial.j2", "{{ body }}")
    _write(tmp_path, "mine/refine.j2", "{{ body }}")
    _write(tmp_path, "mine/system.j2", "")
    env = build_environment([tmp_path])
    check_rows(env, "mine", [(1, {"body": "None"})], set(ENGINE_VARIABLES), Path("d.jsonl"))


# -- text that is not UTF-8 or not valid Unicode ----------------------------------------------


def test_a_template_that_is_not_utf8_is_a_template_error_naming_its_file(tmp_path: Path) -> None:
    bad = _write(tmp_path, "mine/part.j2", b"Dear reader,\ncaf\xe9 {{ body }}")
    _write(tmp_path, "mine/initial.j2", '{% include "mine/part.j2" %}')
    env = build_environment([tmp_path])
    expected = f"template mine/part.j2 ({bad}) is not UTF-8 (line 2, byte 4): save it as UTF-8"
    with pytest.raises(TemplateError) as direct:
        env.render("mine/part.j2", {"body": "b"})
    with pytest.raises(TemplateError) as included:
        env.render("mine/initial.j2", {"body": "b"})
    with pytest.raises(TemplateError) as inspected:
        env.variables_used("mine", ("initial",))
    assert str(direct.value) == str(included.value) == str(inspected.value) == expected


def test_a_template_that_renders_a_lone_surrogate_is_a_template_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine/initial.j2", 'Hi {{ "\\ud83d" }}')
    env = build_environment([tmp_path])
    with pytest.raises(TemplateError) as caught:
        env.render("mine/initial.j2", {})
    assert str(caught.value) == (
        f"template mine/initial.j2 ({path}) rendered text that holds an unpaired surrogate "
        "\\ud83d at character 4: not valid Unicode"
    )


def test_bad_demos_are_named_by_line_and_field(tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": "a", "output": "b"}),
        r'{"text": "half \ud83d", "output": "b"}',
        '{"text": NaN, "output": "b"}',
        json.dumps({"text": None, "output": "b"}),
        json.dumps({"text": "a", "output": "  "}),
    ]
    path = _write(tmp_path, "demos.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        load_examples(path, required=("text",))
    found = [(p.line, p.field, p.message.split(":")[0]) for p in caught.value.problems]
    assert found == [
        (2, "text", "holds an unpaired surrogate \\ud83d at character 6"),
        (3, None, "not valid JSON"),
        (4, "text", "is null"),
        (5, "output", "holds only whitespace"),
    ]


# -- junk that holds nothing, and optional fields of the wrong kind -----------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ([], "is empty"),
        ({}, "is empty"),
        ([None], "holds only null or empty values"),
        (["", "  ", "\u200b"], "holds only null or empty values"),
        ({"a": None, "b": [[], {}], "c": float("nan")}, "holds only null or empty values"),
        ("\u200b", "holds only invisible characters"),
        ("\ufeff", "holds only invisible characters"),
        (" \u200c\u200d\u2060\u00a0\n", "holds only invisible characters"),
        ("\u00ad", "holds only invisible characters"),
        ("\x00\x07\x1b", "holds only invisible characters"),  # control characters
        ("\ufe0f\u034f\u3164", "holds only invisible characters"),  # selectors, joiner, filler
    ],
)
def test_junk_holds_nothing_to_show(value: object, why: str) -> None:
    assert empty_value(value) == why


@pytest.mark.parametrize(
    "value", [0, False, 1.5, "a\u200b", "\u200bé", [0], [False], {"a": "x"}, [None, "x"], "text"]
)
def test_zero_false_and_text_with_something_visible_are_values(value: object) -> None:
    assert empty_value(value) is None


def test_plain_empty_values_are_left_to_no_value() -> None:
    # check_rows already says "is null", "is empty", "holds only whitespace": not said twice
    for value in (None, "", "   \n", float("nan")):
        assert empty_value(value) is None


def test_visible_text_drops_whitespace_and_format_characters() -> None:
    assert visible_text("\ufeff a\u200bb \u00a0c\u2060") == "abc"
    assert "\ufeff".strip() and "\u200b".strip()  # why str.strip() is not enough


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (False, "must be text, not a boolean"),
        (True, "must be text, not a boolean"),
        (3, "must be text, not a number"),
        (2.5, "must be text, not a number"),
        (["fr"], "must be text, not a list"),
        ([], "must be text, not a list"),
        ({"x": 1}, "must be text, not an object"),
        ("French", None),
        (None, None),
    ],
)
def test_not_text_names_the_kind_found(value: object, why: str | None) -> None:
    assert not_text(value) == why


def _load(tmp_path: Path, task: str, rows: list[dict[str, object]], **settings: object) -> object:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return load_input(data, build_run_config({"task": task, **settings}))


def test_junk_and_wrong_kinds_are_row_problems_with_the_missing_ones(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"id": "a", "question": "Why?", "context": False},
        {"id": "b", "question": ["", None]},
        {"id": "c", "context": "no question"},
        {"id": "d", "question": "\ufeff\u200b", "context": {"k": 1}},
        {"id": "e", "question": "Fine?", "context": "\u200b"},
        {"id": "f", "question": "Fine?", "context": None},
    ]
    with pytest.raises(MissingFieldsError) as caught:
        _load(tmp_path, "qa", rows)
    expected = [
        (1, "context", "must be text, not a boolean (template qa/initial.j2"),
        (2, "question", "holds only null or empty values, but template qa/initial.j2"),
        (3, "question", "missing field used by template qa/initial.j2"),
        (4, "context", "must be text, not an object (template qa/initial.j2"),
        (4, "question", "holds only invisible characters, but template qa/initial.j2"),
    ]
    problems = caught.value.problems
    assert [(p.line, p.field) for p in problems] == [(line, name) for line, name, _ in expected]
    for problem, (_, _, words) in zip(problems, expected, strict=True):
        assert problem.message.startswith(words), problem
    assert "Or pass --skip-invalid" in str(caught.value)
    checked = _load(tmp_path, "qa", rows, skip_invalid=True)
    assert [item.id for item in checked.items] == ["e", "f"]  # type: ignore[attr-defined]
    assert checked.skipped_lines == [1, 2, 3, 4]  # type: ignore[attr-defined]
