"""The invariants every reliability scenario checks, in one place, and how scenarios run.

1. Every input item ends as exactly one record keyed by id: ``ok``, or ``failed`` with an error.
2. HTTP attempts per item stay within the README's budget (steps x (1 + critique + judges) x
   ``max_attempts``); after a crash, requests sent again are no more than those in flight.
3. A half-written cache entry or output line is never served: the output has no torn line,
   every cache entry is whole, and every draft's text is one the server really sent.
4. Every call ends within its deadline, and no process outlives its run.
5. The API key, given the recognisable value ``SECRET``, appears nowhere but in the
   ``Authorization`` header: not in stdout/stderr, Prefect flow-run parameters, logs or
   artifacts, cache files or outputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cache_helpers import stored
from tests.cli_helpers import cli_env, run_refine
from tests.fake_openai import LogEntry
from tests.prefect_server import PrefectServer

SECRET = "sk-test-SECRET-4242"
ID_PATTERN = re.compile(r"item-\d{4,5}")  # ids written by write_items, found in every prompt

Record = dict[str, Any]


# -- running scenarios -----------------------------------------------------------------------


def write_items(path: Path, count: int, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """``count`` summarize rows ``item-0000``...; ``extra`` adds fields to rows by id."""
    width = 5 if count > 10_000 else 4
    lines = []
    for i in range(count):
        item_id = f"item-{i:0{width}d}"
        row = {"id": item_id, "text": f"Report {item_id}: the pump at site {i} was repaired."}
        row.update((extra or {}).get(item_id, {}))
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_config(path: Path, steps: int = 2, **retry: float) -> Path:
    """A TOML config with a small, fast retry budget (``retry`` overrides its values)."""
    budget = {
        "max_attempts": 3,
        "max_elapsed_s": 10,
        "call_deadline_s": 2,
        "connect_timeout_s": 2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "retry_after_max_s": 5,
        **retry,
    }
    lines = ['task = "summarize"', f"steps = {steps}", "", "[retry]"]
    lines += [f"{key} = {value}" for key, value in budget.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Budget:
    """The README's maximum HTTP calls per item."""

    steps: int
    max_attempts: int
    side_requests_per_step: int = 0  # critique, plus one per judge reward

    @property
    def per_item(self) -> int:
        return self.steps * (1 + self.side_requests_per_step) * self.max_attempts


def refine_env(prefect: PrefectServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment with the recognisable key, so any leak of it is found."""
    return cli_env(prefect, tmp_path, OPENAI_API_KEY=SECRET, **extra)


def refine(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``refine ARGS`` to its end; its stdout and stderr hold no key and no traceback."""
    result = run_refine(args, env, timeout=timeout)
    logs = result.stdout + result.stderr
    assert SECRET not in logs, "the API key reached the terminal"
    assert "Traceback" not in logs, logs[-3000:]
    return result


# -- 1 and 3: records ----------------------------------------------------------------------


def records_by_id(output: Path, ids: Iterable[str]) -> dict[str, Record]:
    """Invariants 1 and 3 on the output: one whole record per input id, failures explained."""
    data = output.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "a torn last line was left in the output"
    records = [json.loads(line) for line in data.splitlines()]
    counts = Counter(record["id"] for record in records)
    twice = sorted(item_id for item_id, n in counts.items() if n > 1)
    assert not twice, f"ids written more than once: {twice[:10]}"
    expected = set(ids)
    missing, extra = sorted(expected - set(counts)), sorted(set(counts) - expected)
    assert not missing and not extra, f"missing {missing[:10]}, extra {extra[:10]}"
    for record in records:
        assert record["status"] in ("ok", "failed"), record
        if record["status"] == "failed":
            assert isinstance(record["error"], str) and record["error"].strip(), record
    return {record["id"]: record for record in records}


def served_only_real_answers(records: Iterable[Record], log: list[LogEntry]) -> None:
    """Invariant 3: every draft's text is an answer the server sent whole (a torn cache entry
    or output line would show up as text no server ever sent)."""
    answered = {entry.content.strip() for entry in log if entry.status == 200 and entry.content}
    for record in records:
        for draft in record["drafts"]:
            text = draft["text"]
            assert not text or text in answered, (record["id"], draft["step"], text[:80])


def cache_entries_whole(cache_dir: Path) -> int:
    """Invariant 3 on the cache: every entry is a complete JSON object (the database opens
    after the kill, and no entry is torn)."""
    entries = stored(cache_dir)
    for key, value in entries.items():
        assert isinstance(json.loads(value), dict), key
    return len(entries)


# -- 2: the call budget ----------------------------------------------------------------------


def requests_per_item(log: list[LogEntry]) -> Counter[str]:
    """Chat requests the server received for each item id (every prompt quotes its row)."""
    counts: Counter[str] = Counter()
    for entry in log:
        if not entry.path.endswith("/chat/completions"):
            continue
        ids = set(ID_PATTERN.findall(json.dumps(entry.messages)))
        assert len(ids) == 1, f"a request names {sorted(ids)}"
        counts[ids.pop()] += 1
    return counts


def within_budget(records: dict[str, Record], log: list[LogEntry], budget: Budget) -> None:
    """Invariant 2: attempts per item, as recorded and as the server saw them."""
    for item_id, record in records.items():
        attempts = sum(d["attempts"] for d in record["drafts"])
        attempts += sum(s["attempts"] for d in record["drafts"] for s in d["side_requests"])
        assert attempts <= budget.per_item, (item_id, attempts)
    over = {i: n for i, n in requests_per_item(log).items() if n > budget.per_item}
    assert not over, f"items over the budget of {budget.per_item}: {over}"


def only_good_rows_ran(
    code: int, stderr: str, output: Path, log: list[LogEntry], skipped: int, good: list[str]
) -> dict[str, Record]:
    """A ``--skip-invalid`` run (two steps, three attempts): exit 1, ``skipped`` rows reported,
    each ``good`` id ok within the budget, real answers served, and two requests per good row
    only. Returns the records by id."""
    assert code == 1, stderr  # some rows were left out
    assert f"skipped {skipped} invalid row(s)" in stderr
    records = records_by_id(output, good)
    assert all(record["status"] == "ok" for record in records.values())
    within_budget(records, log, Budget(steps=2, max_attempts=3))
    served_only_real_answers(records.values(), log)
    assert len(log) == 2 * len(good)
    return records


def in_flight_at(log: list[LogEntry], moment: float, settle: float = 0.2) -> int:
    """Requests the client had sent and not yet stored at ``moment`` (monotonic): unanswered,
    or answered within ``settle`` seconds before it (on the wire back, not yet cached)."""
    return sum(
        1
        for entry in log
        if entry.received <= moment and (entry.answered is None or entry.answered > moment - settle)
    )


def sent_again(log: list[LogEntry]) -> int:
    """How many requests repeated an earlier one with the same body (a resume's re-sends)."""
    bodies = Counter(json.dumps(entry.body, sort_keys=True) for entry in log)
    return sum(n - 1 for n in bodies.values())


# -- 4: deadlines and processes ------------------------------------------------------------


def within_deadline(records: Iterable[Record], log: list[LogEntry], deadline: float) -> None:
    """Invariant 4: no answer took longer than the deadline on either side of the wire."""
    for record in records:
        for draft in record["drafts"]:
            assert draft["latency_s"] <= deadline, (record["id"], draft["latency_s"])
    slack = 0.5  # the server notices a client that hung up on its next write or read
    for entry in log:
        if entry.answered is not None:
            assert entry.answered - entry.received <= deadline + slack, entry


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of live processes (other than this one) that name ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if marker in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline}")
    return found


# -- 5: secrets ----------------------------------------------------------------------------


def _prefect_post(api_url: str, path: str, body: dict[str, Any]) -> list[Any]:
    request = urllib.request.Request(
        api_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return list(json.loads(response.read()))


def prefect_text(prefect: PrefectServer) -> str:
    """Everything the Prefect server keeps about runs: flow runs (parameters), their logs and
    artifacts, as one string to search."""
    parts = []
    for path in ("/flow_runs/filter", "/logs/filter", "/artifacts/filter", "/task_runs/filter"):
        offset = 0
        while True:
            page = _prefect_post(prefect.api_url, path, {"limit": 200, "offset": offset})
            parts.append(json.dumps(page))
            if len(page) < 200:
                break
            offset += 200
    return "\n".join(parts)


def no_secret_anywhere(
    prefect: PrefectServer | None, *paths: Path, texts: Iterable[str] = ()
) -> None:
    """Invariant 5: the key is in no file under ``paths``, no text, and nothing Prefect keeps."""
    for text in texts:
        assert SECRET not in text
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            assert SECRET.encode() not in file.read_bytes(), f"the API key is in {file}"
    if prefect is not None:
        assert SECRET not in prefect_text(prefect), "the API key reached the Prefect server"
