"""Reading datasets: JSONL and CSV rows become Items, and one error lists every bad line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from flows.data.dataset import read_items
from flows.data.records import Item
from refine.errors import FieldProblem, InputError


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _problems(error: InputError) -> list[tuple[int, str | None, str]]:
    return [(p.line, p.field, p.message) for p in error.problems]


# -- JSONL -----------------------------------------------------------------------------------


def test_jsonl_rows_become_items(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "text": "The cat sat.", "reference": "A cat."},
        {"text": "No id here.", "lang": "en"},
        {"id": 7, "text": "Integer id.", "reference": {"answers": ["x", "y"]}},
    ]
    # A blank line still counts, so the row without an id is line 3.
    text = json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n" + json.dumps(lines[2])
    path = _write(tmp_path, "data.jsonl", text + "\n")

    items = read_items(path)

    assert items == [
        Item(id="a", line=1, fields={"text": "The cat sat."}, reference="A cat."),
        Item(id="3", line=3, fields={"text": "No id here.", "lang": "en"}, reference=None),
        Item(id="7", line=4, fields={"text": "Integer id."}, reference={"answers": ["x", "y"]}),
    ]


def test_ndjson_suffix_crlf_and_bom_are_read(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + b'{"id": "a", "x": "caf\xc3\xa9"}\r\n{"id": "b", "x": "2"}\r\n'
    items = read_items(_write(tmp_path, "data.NDJSON", data))
    assert [(i.id, i.fields) for i in items] == [("a", {"x": "café"}), ("b", {"x": "2"})]


def test_every_bad_jsonl_line_is_listed_at_once(tmp_path: Path) -> None:
    data = b"\n".join(
        [
            b'{"id": "a", "text": "fine"}',  # 1
            b'{"id": "b", "text": "unclosed',  # 2 malformed JSON
            b'["not", "an", "object"]',  # 3
            b'{"id": "c", "text": "caf\xe9"}',  # 4 Latin-1, not UTF-8
            b'{"id": "d", "text": "fine"}',  # 5
            b'{"id": "a", "text": "again"}',  # 6 duplicate of line 1
            b'{"id": "", "text": "empty id"}',  # 7
            b'{"id": true, "text": "bool id"}',  # 8
            b"42",  # 9
        ]
    )
    path = _write(tmp_path, "data.jsonl", data + b"\n")

    with pytest.raises(InputError) as info:
        read_items(path)

    error = info.value
    assert error.path == path
    assert [(line, field) for line, field, _ in _problems(error)] == [
        (2, None),
        (3, None),
        (4, None),
        (6, "id"),
        (7, "id"),
        (8, "id"),
        (9, None),
    ]
    message = str(error)
    assert message.startswith(f"{path}: 7 problem(s)")
    assert f"{path}:line 2: not valid JSON" in message
    assert f"{path}:line 3: a row must be a JSON object" in message
    assert f"{path}:line 4: not UTF-8" in message
    assert f"{path}:line 6, field 'id': duplicate id 'a' (first on line 1)" in message
    assert f"{path}:line 9: a row must be a JSON object" in message


def test_line_number_id_clashing_with_an_explicit_id_is_a_duplicate(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.jsonl", '{"id": "2", "x": 1}\n{"x": 2}\n')
    with pytest.raises(InputError) as info:
        read_items(path)
    assert _problems(info.value) == [(2, "id", "duplicate id '2' (first on line 1)")]


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"])
def test_empty_jsonl_is_an_error(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, "data.jsonl", data)
    with pytest.raises(InputError, match="the file has no rows") as info:
        read_items(path)
    assert str(path) in str(info.value)


def test_many_problems_are_capped_in_the_message_but_all_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.jsonl", "not json\n" * 60)
    with pytest.raises(InputError) as info:
        read_items(path)
    assert len(info.value.problems) == 60
    assert "... and 10 more" in str(info.value)


# -- CSV -------------------------------------------------------------------------------------


def test_csv_rows_become_items(tmp_path: Path) -> None:
    text = 'id,text,reference\na,The cat sat.,A cat.\nb,"Quoted, with comma",\n'
    items = read_items(_write(tmp_path, "data.csv", "\ufeff" + text))
    assert items == [
        Item(id="a", line=2, fields={"text": "The cat sat."}, reference="A cat."),
        Item(id="b", line=3, fields={"text": "Quoted, with comma"}, reference=""),
    ]


def test_csv_without_id_column_uses_line_numbers(tmp_path: Path) -> None:
    items = read_items(_write(tmp_path, "data.CSV", "text\nfirst\nsecond\n"))
    assert [(i.id, i.line, i.fields) for i in items] == [
        ("2", 2, {"text": "first"}),
        ("3", 3, {"text": "second"}),
    ]


def test_short_csv_row_leaves_missing_columns_out(tmp_path: Path) -> None:
    items = read_items(_write(tmp_path, "data.csv", "id,text,lang\na,hello\nb\n"))
    assert [(i.id, i.fields) for i in items] == [("a", {"text": "hello"}), ("b", {})]


def test_every_bad_csv_row_is_listed_at_once(tmp_path: Path) -> None:
    text = "id,text\na,fine\nb,one,too many\nc,fine\na,again\n,empty id\nd,x,y,z\n"
    path = _write(tmp_path, "data.csv", text)
    with pytest.raises(InputError) as info:
        read_items(path)
    assert _problems(info.value) == [
        (3, None, "more values than header columns"),
        (5, "id", "duplicate id 'a' (first on line 2)"),
        (6, "id", "must be a non-empty string or integer"),
        (7, None, "more values than header columns"),
    ]
    assert f"{path}:line 3: more values" in str(info.value)


def test_csv_line_is_where_a_multiline_record_starts(tmp_path: Path) -> None:
    # Line 1 header, 2-3 record a, 4 blank, 5 record b.
    items = read_items(_write(tmp_path, "data.csv", 'id,text\na,"two\nlines"\n\nb,fine\n'))
    assert [(i.id, i.line, i.fields) for i in items] == [
        ("a", 2, {"text": "two\nlines"}),
        ("b", 5, {"text": "fine"}),
    ]


def test_csv_problems_name_the_first_line_of_their_record(tmp_path: Path) -> None:
    # Line 1 header, 2-3 record a (too many values), 4-5 record b, 6 record b again.
    text = 'id,text\na,"x\ny",extra\nb,"p\nq"\nb,again\n'
    with pytest.raises(InputError) as info:
        read_items(_write(tmp_path, "data.csv", text))
    assert _problems(info.value) == [
        (2, None, "more values than header columns"),
        (6, "id", "duplicate id 'b' (first on line 4)"),
    ]


def test_unreadable_csv_record_is_named_by_its_first_line(tmp_path: Path) -> None:
    too_long = "z" * (csv.field_size_limit() + 1)
    text = f'id,text\na,fine\nb,"starts here\n{too_long}"\n'
    with pytest.raises(InputError) as info:
        read_items(_write(tmp_path, "data.csv", text))
    [(line, _, message)] = _problems(info.value)
    assert line == 3 and message.startswith("bad CSV: field larger than field limit")


def test_csv_non_utf8_lines_are_all_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", b"id,text\na,caf\xe9\nb,fine\nc,na\xefve\xff\n")
    with pytest.raises(InputError) as info:
        read_items(path)
    assert [(line, message) for line, _, message in _problems(info.value)] == [
        (2, "not UTF-8 (byte 6 of the line)"),
        (4, "not UTF-8 (byte 5 of the line)"),
    ]


@pytest.mark.parametrize(
    ("data", "message"), [("", "no header row"), ("id,text\n", "the file has no rows")]
)
def test_empty_csv_is_an_error(tmp_path: Path, data: str, message: str) -> None:
    path = _write(tmp_path, "data.csv", data)
    with pytest.raises(InputError, match=message) as info:
        read_items(path)
    assert str(path) in str(info.value)


# -- the file itself -------------------------------------------------------------------------


def test_unknown_suffix_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.json", '[{"id": "a"}]')
    with pytest.raises(InputError, match=r"unknown format: use \.jsonl or \.csv") as info:
        read_items(path)
    assert str(path) in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(InputError) as info:
        read_items(path)
    assert info.value.path == path
    assert str(info.value) == f"{path}: 1 problem(s) in the input\n  {path}: file not found"


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (FieldProblem(0, None, "file not found"), "file not found"),
        (FieldProblem(0, "id", "bad"), "field 'id': bad"),
        (FieldProblem(3, None, "bad"), "line 3: bad"),
        (FieldProblem(3, "id", "bad"), "line 3, field 'id': bad"),
    ],
)
def test_field_problem_names_a_line_only_when_there_is_one(
    problem: FieldProblem, text: str
) -> None:
    assert str(problem) == text
