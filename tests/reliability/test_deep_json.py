"""A 200 answer nested deeper than any parser's stack, through ``refine run`` over real HTTP:
that item fails as an answer that is not JSON, and the run goes on with the others."""

from __future__ import annotations

from pathlib import Path

from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    records_by_id,
    refine,
    refine_env,
    write_config,
    write_items,
)

DEEP = "[" * 5000 + "]" * 5000


def test_an_answer_nested_too_deep_fails_its_item_and_the_run_goes_on(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.script([Reply(raw_body=DEEP)] * 10, match="item-0001")
    ids = [f"item-{i:04d}" for i in range(3)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=1)
    args = ["run", str(data), "-o", str(out), "--config", str(config),
            "--base-url", fake_server.base_url, "--model", "m"]  # fmt: skip

    result = refine(args, refine_env(prefect_server, tmp_path))  # asserts no Traceback

    assert result.returncode == 1, result.stderr[-2000:]
    records = records_by_id(out, ids)
    assert [records[i]["status"] for i in ids] == ["ok", "failed", "ok"]
    error = records["item-0001"]["error"]
    assert "is not valid JSON" in error and "nested too deep" in error, error
