"""Hostile input through ``refine run``: every record is read, each bad one is named by file, line
and field before any request (exit 2), and ``--skip-invalid`` leaves out those rows alone.

The JSONL and CSV files below hold one case a row, so one run checks that a file's every problem
is found at once, and the next that the rows between them still run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.config.run import build_run_config
from flows.loop.preflight import load_input
from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    only_good_rows_ran,
    records_by_id,
    refine,
    refine_env,
    write_config,
)

HALF_EMOJI = r"\ud83d"  # a JSON escape for half a surrogate pair: not valid Unicode on its own
LONG = "y" * 140_000  # past Python csv's default field limit (131,072) and max_prompt_chars

JSONL_ROWS = [
    '{"id": "item-0001", "text": "Report item-0001: all well."}',
    '{"id": 1, "text": "broken emoji half ' + HALF_EMOJI + ' here"}',
    '{"id": "bad' + HALF_EMOJI + '", "text": "an id that is not valid Unicode"}',
    '{"id": "ref", "text": "fine", "reference": "gold ' + HALF_EMOJI + '"}',
    '{"id": "nested", "text": "fine", "meta": {"tags": ["x", "' + HALF_EMOJI + '"]}}',
    '{"id": "key", "text": "fine", "k' + HALF_EMOJI + '": 1}',
    '{"id": "nan", "text": NaN}',
    '{"id": "inf", "text": "fine", "score": -Infinity}',
    '{"id": "big", "text": "fine", "score": 1e999}',
    '{"id": "null", "text": null}',
    '{"id": "empty", "text": ""}',
    '{"id": "blank", "text": "  \\n "}',
    '{"id": "twice", "text": "one value", "text": "another"}',
    '{"id": "item-0002", "text": "Report item-0002: all well."}',
]

# (line, what the line's message says); the field named in it, if any, comes first.
JSONL_PROBLEMS = [
    (2, "field 'text': holds an unpaired surrogate \\ud83d at character 19: not valid Unicode"),
    (3, "field 'id': holds an unpaired surrogate \\ud83d at character 4: not valid Unicode"),
    (4, "field 'reference': holds an unpaired surrogate \\ud83d at character 6"),
    (5, "field 'meta.tags[1]': holds an unpaired surrogate \\ud83d at character 1"),
    (6, "field 'k\\\\ud83d': its name holds an unpaired surrogate \\ud83d at character 2"),
    (7, "not valid JSON: NaN is not a JSON value"),
    (8, "not valid JSON: -Infinity is not a JSON value"),
    (9, "not valid JSON: the number 1e999 is too large for a 64-bit float"),
    (10, "field 'text': is null, but template summarize/initial.j2"),
    (11, "field 'text': is empty, but template summarize/initial.j2"),
    (12, "field 'text': holds only whitespace, but template summarize/initial.j2"),
    (13, "not valid JSON: the key 'text' appears twice in one object"),
]

CSV_DATA = b"".join(
    [
        b"id,text,note\n",  # 1
        b"item-0001,Report item-0001: all well.,NULL\n",  # 2: NULL where no template looks
        b'b,"' + LONG.encode() + b'",\n',  # 3
        b"c,,\n",  # 4
        b"d,NaN,\n",  # 5
        b"e,#N/A,\n",  # 6
        b"f,half an emoji \xed\xa0\xbd (CESU-8),\n",  # 7
        b'item-0007,"Report item-0007:\nall well.",\n',  # 8-9
        b'h,"a quote never closed\n',  # 10
        b"i,swallowed\n",  # 11
        b"j,swallowed\n",  # 12
    ]
)

CSV_PROBLEMS = [
    (3, "field 'text': 140,000 characters, more than a whole prompt may hold"),
    (4, "field 'text': is empty, but template summarize/initial.j2"),
    (5, "field 'text': looks like a missing value 'NaN', but template summarize/initial.j2"),
    (6, "field 'text': looks like a missing value '#N/A'"),
    (7, "not UTF-8 (byte 17 of the line)"),
    (10, "field 'text': a quote opened on line 10 is never closed, so the 2 line(s) after it"),
]

FILES = {
    "data.jsonl": (
        "\n".join(JSONL_ROWS).encode() + b"\n",
        JSONL_PROBLEMS,
        ["item-0001", "item-0002"],
    ),
    "data.csv": (CSV_DATA, CSV_PROBLEMS, ["item-0001", "item-0007"]),
}


def _run(
    fake_server: FakeOpenAI,
    prefect_server: PrefectServer,
    tmp_path: Path,
    data: Path,
    *extra: str,
    config: Path | None = None,
) -> tuple[int, str, Path]:
    """``refine run DATA`` against the fake server: its exit code, stderr and output path."""
    out = tmp_path / "out.jsonl"
    config = config or write_config(tmp_path / "c.toml")
    args = ["run", str(data), "-o", str(out), "--config", str(config), *extra]
    args += ["--base-url", fake_server.base_url, "--model", "m"]
    result = refine(args, refine_env(prefect_server, tmp_path))
    return result.returncode, result.stderr, out


def _run_file(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, name: str, *extra: str
) -> tuple[int, str, Path]:
    """``refine run`` over ``FILES[name]``, checking that stderr names each of its problems by
    file, line (and field): the exit code, stderr and output path."""
    content, problems, _ = FILES[name]
    data = tmp_path / name
    data.write_bytes(content)
    code, stderr, out = _run(fake_server, prefect_server, tmp_path, data, *extra)
    lines = stderr.splitlines()
    for line, words in problems:
        named = (f"{data}:line {line}, {words}", f"{data}:line {line}: {words}")
        assert any(n in s for s in lines for n in named), (line, words, stderr[-3000:])
    return code, stderr, out


@pytest.mark.parametrize("name", list(FILES))
def test_every_hostile_row_is_named_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, name: str
) -> None:
    code, stderr, out = _run_file(fake_server, prefect_server, tmp_path, name)
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{tmp_path / name}: " in errors[0], stderr[-2000:]
    assert f"{len(FILES[name][1])} problem(s) in the input" in stderr
    assert fake_server.chat_requests() == [] and not out.exists()


@pytest.mark.parametrize("name", list(FILES))
def test_skip_invalid_leaves_out_the_hostile_rows_alone(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, name: str
) -> None:
    _, problems, good = FILES[name]
    code, stderr, out = _run_file(fake_server, prefect_server, tmp_path, name, "--skip-invalid")
    only_good_rows_ran(code, stderr, out, fake_server.chat_requests(), len(problems), good)


def test_rows_read_counts_every_record_found_good_or_bad(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(CSV_DATA)
    config = build_run_config({"skip_invalid": True, "task": "summarize"})
    checked = load_input(data, config)
    # 8 records on lines 2 to 10 (one spans two lines); i and j were swallowed by h's quote.
    assert checked.rows_read == 8
    assert [item.id for item in checked.items] == ["item-0001", "item-0007"]
    assert checked.rows_read == len(checked.items) + len(checked.skipped_lines)


def test_objects_and_lists_reach_the_prompt_as_json(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    row = {"id": "obj", "text": {"title": "Ferry", "tags": ["sea", "café"], "daily": True}}
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    code, stderr, out = _run(fake_server, prefect_server, tmp_path, data)
    assert code == 0, stderr
    assert records_by_id(out, ["obj"])["obj"]["status"] == "ok"
    [first, *_] = fake_server.chat_requests()
    prompt = first.messages[-1]["content"]
    assert '{"title": "Ferry", "tags": ["sea", "café"], "daily": true}' in prompt
    assert "'title'" not in prompt and "True" not in prompt


def _demos(tmp_path: Path) -> Path:
    demos = tmp_path / "demos.jsonl"
    demos.write_text(
        '{"text": "A long report.", "output": "Short."}\n'
        '{"text": "Half ' + HALF_EMOJI + '", "output": "Short."}\n',
        encoding="utf-8",
    )
    return demos


def _template_dir(tmp_path: Path, initial: bytes) -> Path:
    folder = tmp_path / "templates" / "summarize"
    folder.mkdir(parents=True)
    (folder / "initial.j2").write_bytes(initial)
    return folder.parent


# (the config file's first line, summarize/initial.j2 if overridden, what stderr must say)
CONFIG_CASES: dict[str, tuple[bytes, bytes | None, list[str]]] = {
    "a demos file with half an emoji": (
        b'examples_path = "{demos}"',
        None,
        ["demos.jsonl:line 2, field 'text': holds an unpaired surrogate \\ud83d at character 6"],
    ),
    "a template that is not UTF-8": (
        b"",
        b"Caf\xe9 {{ text }}",
        ["template summarize/initial.j2 (", "initial.j2) is not UTF-8 (line 1, byte 4)"],
    ),
    "a template that writes half an emoji": (
        b"",
        b'{{ text }} {{ "\\ud83d" }}',
        ["rendered text that holds an unpaired surrogate \\ud83d", "not valid Unicode"],
    ),
    "a TOML string with half an emoji": (
        b'source_lang = "Eng' + HALF_EMOJI.encode() + b'"',
        None,
        ["not valid TOML: Escaped character is not a Unicode scalar value"],
    ),
    "a TOML file that is not UTF-8": (b'source_lang = "Fran\xe7ais"', None, ["c.toml", "UTF-8"]),
}


@pytest.mark.parametrize(
    "case",
    list(CONFIG_CASES),
)
def test_text_from_demos_templates_and_config_is_checked_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, case: str
) -> None:
    top, template, expected = CONFIG_CASES[case]
    config = write_config(tmp_path / "c.toml")
    top = top.replace(b"{demos}", str(_demos(tmp_path)).encode())
    config.write_bytes(top + b"\n" + config.read_bytes())
    flags = ["--template-dir", str(_template_dir(tmp_path, template))] if template else []
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a", "text": "Report a: all well."}\n', encoding="utf-8")
    code, stderr, out = _run(fake_server, prefect_server, tmp_path, data, *flags, config=config)
    assert code == 2, stderr
    for words in expected:
        assert words in stderr, (words, stderr[-2000:])
    assert fake_server.chat_requests() == [] and not out.exists()
