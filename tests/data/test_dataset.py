"""Reading datasets: JSONL and CSV rows become Items, and one error lists every bad line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from flows.data.dataset import read_items, read_rows
from flows.data.records import Item
from refine.errors import FieldProblem, InputError
from refine.jsonl import MAX_ROW_DEPTH


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


def test_a_csv_field_past_the_csv_module_limit_is_read_with_the_records_after_it(
    tmp_path: Path,
) -> None:
    too_long = "z" * (csv.field_size_limit() + 1)
    text = f'id,text\na,fine\nb,"starts here\n{too_long}"\nc,after\nd,"last"\n'
    items = read_items(_write(tmp_path, "data.csv", text))
    assert [(i.id, i.line) for i in items] == [("a", 2), ("b", 3), ("c", 5), ("d", 6)]
    assert items[1].fields["text"] == f"starts here\n{too_long}"


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
    with pytest.raises(InputError, match=r"unknown format: use \.jsonl, \.csv, \.parquet") as info:
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


# -- hostile input: every record read, each bad one a problem of its own ------------------------

TRICKY_CSV = [
    'id,text\na,"x""y"\n',  # an escaped quote
    'id,text\na,"ab"c"d\n',  # text after a closing quote is kept
    'id,text\na,b"c\n',  # a quote inside a plain value is a character
    'id,text\na,"x\r\ny"\r\nb,z\r\n',  # CRLF, inside a quoted value too
    "id,text\ra,one\rb,two",  # old Mac line ends, no newline at the end
    'id,text\na,"p,q"\n\n\nb,\n',  # a comma in quotes, blank lines, an empty last value
    'id,text\na,""\n',  # a quoted empty value
]


@pytest.mark.parametrize("text", TRICKY_CSV)
def test_csv_values_are_what_the_csv_module_reads(tmp_path: Path, text: str) -> None:
    expected = [row for row in csv.reader(io.StringIO(text, newline="")) if row][1:]
    items = read_items(_write(tmp_path, "data.csv", text))
    assert [[i.id, i.fields["text"]] for i in items] == expected


def test_a_nul_character_or_a_lone_carriage_return_does_not_end_the_read(tmp_path: Path) -> None:
    items = read_items(_write(tmp_path, "data.csv", "id,text\na,b\x00c\nb,d\re,f\n"))
    assert [(i.id, i.line, i.fields) for i in items] == [
        ("a", 2, {"text": "b\x00c"}),
        ("b", 3, {"text": "d"}),
        ("e", 4, {"text": "f"}),
    ]


def test_an_unclosed_quote_names_where_it_opens_and_how_many_lines_it_swallowed(
    tmp_path: Path,
) -> None:
    text = 'id,text\na,fine\nb,"opens here\nc,never\nd,read\n'
    items, problems = read_rows(_write(tmp_path, "data.csv", text))
    assert [i.id for i in items] == ["a"]
    assert [(p.line, p.field, p.message) for p in problems] == [
        (
            3,
            "text",
            "a quote opened on line 3 is never closed, so the 2 line(s) after it were not read",
        )
    ]


def test_an_unclosed_quote_on_the_last_line_of_a_multiline_record(tmp_path: Path) -> None:
    text = 'id,text,note\na,"two\nlines","and an open quote'
    _, problems = read_rows(_write(tmp_path, "data.csv", text))
    assert [(p.line, p.field, p.message) for p in problems] == [
        (2, "note", "a quote opened on line 3 is never closed")
    ]


def test_a_csv_record_that_is_not_utf8_is_its_own_problem_and_the_others_are_read(
    tmp_path: Path,
) -> None:
    # \xed\xa0\xbd is a surrogate (half an emoji) encoded as UTF-8 would encode it (CESU-8):
    # not UTF-8, and never a lone surrogate in the text.
    data = b'id,text\na,fine\nb,"half \xed\xa0\xbd"\nc,"two\nlines \xff"\nd,fine\n'
    items, problems = read_rows(_write(tmp_path, "data.csv", data))
    assert [i.id for i in items] == ["a", "d"]
    assert [(p.line, p.message) for p in problems] == [
        (3, "not UTF-8 (byte 9 of the line)"),
        (4, "not UTF-8 (line 5, byte 7)"),
    ]


def test_a_csv_header_naming_a_column_twice_concerns_the_whole_file(tmp_path: Path) -> None:
    _, problems = read_rows(_write(tmp_path, "data.csv", "id,text,text\na,one,two\n"))
    assert [(p.line, p.field, p.message) for p in problems] == [
        (0, "text", "column named twice in the header (line 1)")
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": NaN}', "not valid JSON: NaN is not a JSON value; write null, or the text"),
        ('{"text": -Infinity}', "not valid JSON: -Infinity is not a JSON value"),
        ('{"n": 1e999}', "not valid JSON: the number 1e999 is too large for a 64-bit float"),
        ('{"text": "a", "m": {"k": 1, "k": 2}}', "not valid JSON: the key 'k' appears twice"),
    ],
)
def test_values_json_cannot_hold_are_refused_naming_the_line(
    tmp_path: Path, line: str, message: str
) -> None:
    items, problems = read_rows(_write(tmp_path, "data.jsonl", '{"text": "ok"}\n' + line + "\n"))
    assert len(items) == 1
    [problem] = problems
    assert problem.line == 2 and problem.message.startswith(message)


SURROGATE_ROWS = {
    r'{"id": 1, "text": "broken emoji half \ud83d here"}': (
        "text",
        r"holds an unpaired surrogate \ud83d at character 19: not valid Unicode",
    ),
    r'{"id": "a\udc00", "text": "ok"}': ("id", r"holds an unpaired surrogate \udc00"),
    r'{"text": "ok", "reference": {"answers": ["\ud800"]}}': (
        "reference.answers[0]",
        r"holds an unpaired surrogate \ud800 at character 1",
    ),
    r'{"text": "ok", "k\ud83d": 1}': (r"k\ud83d", r"its name holds an unpaired surrogate \ud83d"),
}


@pytest.mark.parametrize("row", list(SURROGATE_ROWS))
def test_text_that_is_not_valid_unicode_is_named_by_line_and_field(
    tmp_path: Path, row: str
) -> None:
    field, message = SURROGATE_ROWS[row]
    path = _write(tmp_path, "data.jsonl", '{"text": "fine"}\n' + row + "\n")
    items, problems = read_rows(path)
    assert [i.fields for i in items] == [{"text": "fine"}]
    [problem] = problems
    assert (problem.line, problem.field) == (2, field) and problem.message.startswith(message)
    str(InputError(path, problems)).encode("utf-8")  # the message itself can be printed


def test_a_paired_surrogate_escape_is_one_character_and_fine(tmp_path: Path) -> None:
    [item] = read_items(_write(tmp_path, "data.jsonl", r'{"text": "smile \ud83d\ude00"}' + "\n"))
    assert item.fields["text"] == "smile \U0001f600"


def test_an_unreadable_csv_header_says_how_many_lines_went_unread(tmp_path: Path) -> None:
    _, problems = read_rows(_write(tmp_path, "data.csv", b"id,te\xffxt\na,b\n\nc,d\n"))
    assert [(p.line, p.message) for p in problems] == [
        (1, "not UTF-8 (byte 6 of the line)"),
        (1, "the header cannot be read, so none of the 3 line(s) after it were read as rows"),
    ]


def test_a_row_nested_deeper_than_the_stack_is_its_lines_problem(tmp_path: Path) -> None:
    deep = '{"text": "x", "meta": ' + "[" * 3000 + "]" * 3000 + "}"
    lines = ['{"text": "ok"}', deep, '{"text": "also ok"}']
    items, problems = read_rows(_write(tmp_path, "data.jsonl", "\n".join(lines) + "\n"))
    assert [item.fields["text"] for item in items] == ["ok", "also ok"]
    assert problems == [FieldProblem(2, None, "not valid JSON: nested too deep")]


def test_a_row_nested_past_the_limit_is_its_lines_problem(tmp_path: Path) -> None:
    """Deep enough to parse, too deep for every recursive walk after (templates, json.dumps)."""

    def row(levels: int) -> str:  # the row object is level 1
        return '{"text": "x", "meta": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    lines = [row(MAX_ROW_DEPTH), row(MAX_ROW_DEPTH + 1), row(900)]
    items, problems = read_rows(_write(tmp_path, "data.jsonl", "\n".join(lines) + "\n"))
    assert [item.line for item in items] == [1]
    assert [(p.line, p.message) for p in problems] == [
        (2, f"nested too deep: 201 levels of arrays and objects, at most {MAX_ROW_DEPTH}"),
        (3, f"nested too deep: 900 levels of arrays and objects, at most {MAX_ROW_DEPTH}"),
    ]
