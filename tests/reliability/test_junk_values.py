"""Junk values through ``refine run``: a templated field holding ``[]``, ``{}``, ``[null]`` or
only invisible characters (U+200B, U+FEFF, ...) counts as empty, and an optional field that only
text fits (translate's languages) holding a boolean, number, list or object is a row problem.
Each is named by file, line and field before any request (exit 2); ``--skip-invalid`` runs the
other rows, whose null or invisible optional fields take their defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    only_good_rows_ran,
    refine,
    refine_env,
    write_config,
)

ROWS: list[dict[str, object]] = [
    {"id": "item-0001", "text": "item-0001: good morning.", "target_lang": "German"},  # 1
    {"id": "list", "text": []},  # 2
    {"id": "object", "text": {}},  # 3
    {"id": "nulls", "text": [None, ""]},  # 4
    {"id": "nested", "text": {"a": "\u200b", "b": [None, {}]}},  # 5
    {"id": "zwsp", "text": "\u200b"},  # 6
    {"id": "format", "text": "\ufeff \u2060\u200c\u200d\u00a0"},  # 7
    {"id": "bool", "text": "Hi.", "target_lang": False},  # 8
    {"id": "objlang", "text": "Hi.", "target_lang": {"x": 1}},  # 9
    {"id": "number", "text": "Hi.", "source_lang": 5},  # 10
    {"id": "listlang", "text": "Hi.", "source_lang": ["en"]},  # 11
    {
        "id": "item-0002",
        "text": "item-0002: good night.",
        "target_lang": None,
    },  # 12: the default, French
    {
        "id": "item-0003",
        "text": "item-0003: good day.",
        "target_lang": "\u200b\ufeff",
    },  # 13: French too
    {
        "id": "item-0004",
        "text": {"id": "item-0004", "count": 0, "done": False},
    },  # 14: 0 and false are values
]

TEMPLATES = "translate/initial.j2"
PROBLEMS = [
    (2, f"field 'text': is empty, but template {TEMPLATES}"),
    (3, f"field 'text': is empty, but template {TEMPLATES}"),
    (4, f"field 'text': holds only null or empty values, but template {TEMPLATES}"),
    (5, f"field 'text': holds only null or empty values, but template {TEMPLATES}"),
    (6, f"field 'text': holds only invisible characters, but template {TEMPLATES}"),
    (7, f"field 'text': holds only invisible characters, but template {TEMPLATES}"),
    (8, f"field 'target_lang': must be text, not a boolean (template {TEMPLATES}"),
    (9, f"field 'target_lang': must be text, not an object (template {TEMPLATES}"),
    (10, f"field 'source_lang': must be text, not a number (template {TEMPLATES}"),
    (11, f"field 'source_lang': must be text, not a list (template {TEMPLATES}"),
]
GOOD = ["item-0001", "item-0002", "item-0003", "item-0004"]


def _run(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, *extra: str
) -> tuple[int, str, Path]:
    """``refine run`` of ROWS as translate, checking that stderr names every problem by file,
    line and field: the exit code, stderr and output path."""
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    config = write_config(tmp_path / "c.toml")
    config.write_text(config.read_text().replace('"summarize"', '"translate"'), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "-o", str(out), "--config", str(config), *extra]
    args += ["--base-url", fake_server.base_url, "--model", "m"]
    result = refine(args, refine_env(prefect_server, tmp_path))
    lines = result.stderr.splitlines()
    for line, words in PROBLEMS:
        assert any(f"{data}:line {line}, {words}" in s for s in lines), (line, result.stderr)
    return result.returncode, result.stderr, out


def test_every_junk_value_is_named_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    code, stderr, out = _run(fake_server, prefect_server, tmp_path)
    assert code == 2, stderr
    assert f"{len(PROBLEMS)} problem(s) in the input" in stderr
    assert fake_server.chat_requests() == [] and not out.exists()


def test_skip_invalid_runs_the_other_rows_with_their_defaults(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    code, stderr, out = _run(fake_server, prefect_server, tmp_path, "--skip-invalid")
    log = fake_server.chat_requests()
    only_good_rows_ran(code, stderr, out, log, len(PROBLEMS), GOOD)
    firsts = [e.messages[-1]["content"] for e in log if "<source>" in e.messages[-1]["content"]]
    prompts = "\n".join(firsts)
    assert "into German:" in prompts and prompts.count("into French:") >= 3
    assert "\u200b" not in prompts and "false translation" not in prompts
    assert '"count": 0, "done": false}' in prompts
