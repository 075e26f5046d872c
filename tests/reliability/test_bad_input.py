"""Bad input: each case fails before any request, naming file, line and field (exit 2); with
``--skip-invalid`` the bad rows are reported and the rest run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    SECRET,
    Budget,
    no_secret_anywhere,
    records_by_id,
    refine,
    refine_env,
    served_only_real_answers,
    within_budget,
    write_config,
)

TEN_MB = "x" * (10 * 1024 * 1024)


def _jsonl(*rows: dict[str, object] | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


GOOD = {"id": "item-0000", "text": "Report item-0000: all well."}

# (file name, content, what the one error must say besides the file)
CASES = {
    "malformed JSONL line": (
        "data.jsonl",
        _jsonl(GOOD, '{"id": "item-0001", "text": "cut'),
        ["line 2", "not valid JSON"],
    ),
    "CSV with a missing column": (
        "data.csv",
        b"id,body\nitem-0000,hello\n",
        ["line 2", "field 'text'", "missing field"],
    ),
    "duplicate ids": (
        "data.jsonl",
        _jsonl(GOOD, {"id": "item-0000", "text": "again"}),
        ["line 2", "field 'id'", "duplicate id 'item-0000' (first on line 1)"],
    ),
    "non-UTF-8 bytes": (
        "data.jsonl",
        _jsonl(GOOD) + b'{"id": "item-0001", "text": "caf\xe9"}\n',
        ["line 2", "not UTF-8"],
    ),
    "an empty file": ("data.jsonl", b"", ["the file has no rows"]),
    "a 10 MB field": (
        "data.jsonl",
        _jsonl(GOOD, {"id": "item-0001", "text": TEN_MB}),
        ["line 2", "field 'text'", "10,485,760 characters", "max_prompt_chars = 100,000"],
    ),
    "a row missing a template variable": (
        "data.jsonl",
        _jsonl({**GOOD, "audience": "engineers"}, {"id": "item-0001", "text": "no audience"}),
        ["line 2", "field 'audience'", "missing field used by template summarize/initial.j2"],
    ),
}

AUDIENCE_TEMPLATE = '{% include "summarize/input.j2" %}\nWrite for {{ audience }}.\n'


def _template_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "templates" / "summarize"
    folder.mkdir(parents=True)
    (folder / "initial.j2").write_text(AUDIENCE_TEMPLATE)
    (folder / "refine.j2").write_text(AUDIENCE_TEMPLATE)
    return folder.parent


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_before_any_request_naming_file_line_and_field(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, case: str
) -> None:
    name, content, expected = CASES[case]
    data = tmp_path / name
    data.write_bytes(content)
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "-o", str(out), "--config", str(write_config(tmp_path / "c.toml"))]
    args += ["--base-url", fake_server.base_url, "--model", "m"]
    args += ["--template-dir", str(_template_dir(tmp_path))]
    result = refine(args, refine_env(prefect_server, tmp_path))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(data) in errors[0]
    for words in expected:
        assert words in result.stderr, (words, result.stderr[-1500:])
    if case != "an empty file":
        assert "--skip-invalid" in result.stderr  # the way out is named
    assert fake_server.chat_requests() == [] and not out.exists()


def test_skip_invalid_reports_every_bad_row_and_runs_the_rest(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    def good(n: int) -> dict[str, object]:
        return {"id": f"item-{n:04d}", "text": f"Report item-{n:04d}: fine.", "audience": "all"}

    data = tmp_path / "data.jsonl"
    data.write_bytes(
        _jsonl(good(0), '{"id": "item-0009", "text": "cut', good(1))
        + b'{"id": "item-0008", "text": "caf\xe9", "audience": "all"}\n'
        + _jsonl(
            {**good(0), "text": "Report item-0000 again"},  # duplicate id: line 5
            {"id": "item-0007", "text": TEN_MB, "audience": "all"},
            {"id": "item-0006", "text": "Report item-0006: no audience"},
            good(2),
        )
    )
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml")
    args = ["run", str(data), "-o", str(out), "--config", str(config), "--skip-invalid"]
    args += ["--base-url", fake_server.base_url, "--model", "m"]
    args += ["--template-dir", str(_template_dir(tmp_path))]
    result = refine(args, refine_env(prefect_server, tmp_path))
    assert result.returncode == 1, result.stderr  # not every row has an ok record
    assert "skipped 5 invalid row(s)" in result.stderr
    for line, words in [
        (2, "not valid JSON"),
        (4, "not UTF-8"),
        (5, "duplicate id"),
        (6, "max_prompt_chars"),
        (7, "field 'audience'"),
    ]:
        assert any(f"{data}:line {line}" in s and words in s for s in result.stderr.splitlines())
    records = records_by_id(out, ["item-0000", "item-0001", "item-0002"])
    assert all(r["status"] == "ok" for r in records.values())
    assert records["item-0000"]["drafts"][0]["text"].endswith("Write for all.")
    log = fake_server.chat_requests()
    within_budget(records, log, Budget(steps=2, max_attempts=3))
    served_only_real_answers(records.values(), log)
    assert len(log) == 6 and {e.headers["authorization"] for e in log} == {f"Bearer {SECRET}"}
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[result.stdout])
