"""``refine run`` on data as users have it: Parquet and saved Hugging Face datasets with their
own column names (``--map``), a few rows first (``--limit``, ``--sample``), and the summary's
figures as JSON (``--summary-json``). Real subprocesses, real HTTP, a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config.run import build_run_config
from flows.deployments import batch_parameters
from flows.loop.preflight import load_input
from tests.cli_helpers import cli_env, read_records, run_refine
from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer

NEWS = {
    "guid": [f"n{i:03d}" for i in range(40)],
    "article": [f"Article {i}: the bridge on route {i} reopened after repairs." for i in range(40)],
    "highlights": [f"Route {i} bridge reopened." for i in range(40)],
}
MAP = ["--map", "text=article", "--map", "id=guid", "--map", "reference=highlights"]


def _run(
    fake: FakeOpenAI, prefect: PrefectServer, tmp_path: Path, data: Path, *extra: str
) -> tuple[int, str, Path]:
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "--task", "summarize", "--steps", "2", "-o", str(out), *extra]
    done = run_refine(
        [*args, "--base-url", fake.base_url, "--model", "m"], cli_env(prefect, tmp_path)
    )
    return done.returncode, done.stdout + done.stderr, out


def test_parquet_mapped_limited_with_a_summary_json(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = tmp_path / "news.parquet"
    pq.write_table(pa.table(NEWS), data)
    summary = tmp_path / "summary.json"
    code, said, out = _run(
        fake_server,
        prefect_server,
        tmp_path,
        data,
        *MAP,
        "--limit",
        "3",
        "--summary-json",
        str(summary),
    )
    assert code == 0, said
    records = read_records(out)
    assert [r["id"] for r in records] == ["n000", "n001", "n002"]
    assert all(r["status"] == "ok" for r in records)
    assert "rouge" in json.dumps(records[0]["drafts"][0]["rewards"])  # the mapped reference
    prompts = [json.dumps(e.body["messages"]) for e in fake_server.chat_requests()]
    assert any("Article 1: the bridge on route 1" in p for p in prompts)
    assert not any("Article 3:" in p for p in prompts)  # past the limit: never sent
    figures = json.loads(summary.read_text())
    assert figures["input_path"] == str(data) and figures["exit_code"] == 0
    assert figures["selection"] == "the first 3 rows (--limit 3)"
    assert (figures["rows_read"], figures["ok"], figures["failed"]) == (3, 3, 0)
    assert figures["http_attempts"] == len(fake_server.chat_requests())
    assert "input rows taken" in said and "the first 3 rows (--limit 3)" in said


def test_a_saved_dataset_sampled(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "news"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(NEWS)}).save_to_disk(str(folder))
    code, said, out = _run(
        fake_server,
        prefect_server,
        tmp_path,
        folder,
        *MAP,
        "--sample",
        "4",
        "--sample-seed",
        "11",
        "--summary-json",
        str(tmp_path / "summary.json"),
    )
    assert code == 0, said
    config = build_run_config(
        {
            "task": "summarize",
            "input": {"map": {"text": "article", "id": "guid"}, "sample": 4, "seed": 11},
        }
    )
    expected = load_input(folder, config).ids
    assert sorted(r["id"] for r in read_records(out)) == sorted(expected) and len(expected) == 4
    figures = json.loads((tmp_path / "summary.json").read_text())
    assert figures["selection"] == "4 rows sampled at random (--sample 4 --sample-seed 11)"
    assert figures["rows_read"] == 4 and "input rows taken" in said


def test_a_bad_mapping_fails_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = tmp_path / "news.parquet"
    pq.write_table(pa.table(NEWS), data)
    code, said, out = _run(fake_server, prefect_server, tmp_path, data, "--map", "text=body")
    assert code == 2, said
    assert f"{data}: field 'text': no column 'body' in the dataset (--map text=body)" in said
    assert "its columns: guid, article, highlights" in said and "Traceback" not in said
    assert fake_server.chat_requests() == [] and not out.exists()
    code, said, _ = _run(fake_server, prefect_server, tmp_path, data, "--map", "text")
    assert code == 2 and "write VARIABLE=COLUMN" in said


def test_a_deployment_carries_the_mapping_and_the_choice(tmp_path: Path) -> None:
    config = build_run_config({"input": {"map": {"text": "article"}, "limit": 5}})
    parameters = batch_parameters(tmp_path / "news.parquet", tmp_path / "out.jsonl", config)
    assert parameters["config"]["input"]["map"] == {"text": "article"}
    assert parameters["config"]["input"]["limit"] == 5
    hub = batch_parameters(Path("abisee/cnn_dailymail"), tmp_path / "o.jsonl", config)
    assert hub["input_path"] == "abisee/cnn_dailymail"  # a Hub name is not made a path
