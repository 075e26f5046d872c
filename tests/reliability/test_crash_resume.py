"""Crashes: the endpoint dies mid-batch and comes back; ``refine run`` is killed with SIGKILL
again and again and resumed; two runs share a cache; cache entries are damaged on disk."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from tests.cache_helpers import spoil, stored
from tests.cli_helpers import REFINE, kill_when_written
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer
from tests.reliability.fake_process import FakeServerProcess
from tests.reliability.invariants import (
    Budget,
    cache_entries_whole,
    in_flight_at,
    no_secret_anywhere,
    processes_mentioning,
    records_by_id,
    refine,
    refine_env,
    sent_again,
    served_only_real_answers,
    within_budget,
    write_config,
    write_items,
)


def _command(data: Path, out: Path, config: Path, base_url: str, *more: str) -> list[str]:
    return [REFINE, "run", str(data), "-o", str(out), "--config", str(config),
            "--base-url", base_url, "--model", "m", *more]  # fmt: skip


def test_an_endpoint_that_dies_mid_batch_and_comes_back(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(120)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    # 5 backoffs of at least 0.1, 0.2, 0.4, 0.5, 0.5 s outlast the second the server is away
    config = write_config(
        tmp_path / "c.toml", max_attempts=6, backoff_initial_s=0.2, backoff_max_s=1.0
    )
    server = FakeServerProcess("--latency-ms", "30")
    server.start()
    try:
        command = _command(data, out, config, server.base_url, "--concurrency", "8")
        env = refine_env(prefect_server, tmp_path)
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_bytes().count(b"\n") >= 30):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended too soon"
            time.sleep(0.02)
        server.kill()  # requests in flight are reset; new ones are refused
        time.sleep(1.0)
        server.start()  # the same address again
        stdout, stderr = run.communicate(timeout=180)
        log = FakeOpenAIControl(server.base_url).chat_requests()  # since the restart
    finally:
        server.kill(signal.SIGTERM)
    assert run.returncode == 0, stderr[-2000:]
    records = records_by_id(out, ids)
    assert all(r["status"] == "ok" for r in records.values())
    within_budget(records, log, Budget(steps=2, max_attempts=6))
    retried = [r["id"] for r in records.values() if any(d["attempts"] > 1 for d in r["drafts"])]
    assert retried, "no request was in flight when the server died"
    assert processes_mentioning(str(tmp_path)) == []
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[stdout, stderr])


def test_kill_9_at_ten_random_points_then_resume_loses_and_repeats_nothing(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(500)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=3)
    points = sorted(random.Random(20261107).sample(range(1, 490), 10))
    env = refine_env(prefect_server, tmp_path)
    with FakeServerProcess("--latency-ms", "20") as server:
        command = _command(data, out, config, server.base_url, "--concurrency", "16")
        kills = []
        for point in points:
            kills.append(kill_when_written(command, env, out, records=point))
            assert processes_mentioning(str(tmp_path)) == []  # the whole group died
        result = refine(command[1:], env)
        log = FakeOpenAIControl(server.base_url).chat_requests()
    assert result.returncode == 0, result.stderr[-2000:]

    records = records_by_id(out, ids)
    assert all(r["status"] == "ok" and len(r["drafts"]) == 3 for r in records.values())
    within_budget(records, log, Budget(steps=3, max_attempts=3))
    served_only_real_answers(records.values(), log)
    assert cache_entries_whole(tmp_path / "cache") >= 1500
    # Only requests in flight at a kill (sent, and not stored by the client before it died)
    # may be sent again: answers already received come from the cache on resume.
    in_flight = [in_flight_at(log, killed_at) for killed_at in kills]
    again = sent_again(log)
    assert again <= sum(in_flight) and again <= 16 * len(kills), (again, in_flight)
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[result.stdout])


def test_two_runs_sharing_a_cache_both_finish_and_agree(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(150)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    config = write_config(tmp_path / "c.toml")
    env = refine_env(prefect_server, tmp_path)
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    with FakeServerProcess("--latency-ms", "5") as server:
        runs = [
            subprocess.Popen(_command(data, out, config, server.base_url), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for out in outs
        ]  # fmt: skip
        results = [run.communicate(timeout=240) for run in runs]
        log = FakeOpenAIControl(server.base_url).chat_requests()
    assert [run.returncode for run in runs] == [0, 0], [err[-1500:] for _, err in results]
    first, second = (records_by_id(out, ids) for out in outs)
    for item_id in ids:
        assert [d["text"] for d in first[item_id]["drafts"]] == [
            d["text"] for d in second[item_id]["drafts"]
        ]
    served_only_real_answers([*first.values(), *second.values()], log)
    assert cache_entries_whole(tmp_path / "cache") == 300  # 150 items x 2 steps, each once
    assert 300 <= len(log) <= 600


def test_cache_entries_damaged_on_disk_are_misses(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(20)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    config = write_config(tmp_path / "c.toml", steps=1)
    env = refine_env(prefect_server, tmp_path)
    with FakeServerProcess() as server:
        control = FakeOpenAIControl(server.base_url)
        first = refine(_command(data, tmp_path / "a.jsonl", config, server.base_url)[1:], env)
        assert first.returncode == 0 and len(control.chat_requests()) == 20
        entries = sorted(stored(tmp_path / "cache").items())
        damage = [
            lambda text: text[: len(text) // 2],  # torn
            lambda text: b"",  # empty
            lambda text: b"\x00\x01 not json",  # garbage
            lambda text: b"[" + text + b"]",  # not an object
            lambda text: text.replace(b'{"content":', b'{"content": 7, "x":'),  # wrong shape
        ]
        for (key, value), damaged in zip(entries, damage, strict=False):
            spoil(tmp_path / "cache", key, damaged(value))
        again = refine(_command(data, tmp_path / "b.jsonl", config, server.base_url)[1:], env)
        log = control.chat_requests()
    assert again.returncode == 0
    assert len(log) == 20 + len(damage)  # each damaged entry was asked again, nothing else
    a, b = records_by_id(tmp_path / "a.jsonl", ids), records_by_id(tmp_path / "b.jsonl", ids)
    assert all(a[i]["output"] == b[i]["output"] for i in ids)
    served_only_real_answers(b.values(), log)
    cache_entries_whole(tmp_path / "cache")  # the misses were written back whole
