"""The request cache's store: a kill mid-write, two processes at once, formats it does not know,
and moving a one-file-per-request cache in (once, and again after a kill)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from flows.llm.cache import RequestCache
from flows.llm.cache_store import APPLICATION_ID, DB_NAME, FORMAT, open_store
from refine.errors import ConfigError
from tests.cache_helpers import stored

REPO = Path(__file__).resolve().parents[2]
FIXTURE_CACHE = REPO / "tests" / "fixtures" / "previous_release" / "cache"


def answer(n: int, writer: int = 0) -> dict[str, Any]:
    """A realistic answer (about 300 bytes of JSON) that names its writer and number."""
    return {
        "content": f"Draft {n} of writer {writer}: the pump at site {n} was repaired. " * 3,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 120, "completion_tokens": 48, "cached": 0},
        "token_logprobs": None,
    }


def key(n: int, writer: int = 0) -> str:
    return f"{writer:04x}{n:060x}"


# -- a kill mid-write --------------------------------------------------------------------------

WRITE_FOREVER = """
import sys
from pathlib import Path
from flows.llm.cache import RequestCache
from tests.llm.test_cache_store import answer, key
cache = RequestCache(Path(sys.argv[1]))
n = 0
while True:
    cache.put(key(n), answer(n))
    print(n, flush=True)  # only once the put returned: committed
    n += 1
"""


def test_a_run_killed_mid_write_keeps_every_committed_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE_FOREVER, str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    committed = -1
    for line in writer.stdout:
        committed = int(line)
        if committed >= 3000:
            break
    time.sleep(0.05)  # mid-way through later puts
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    assert writer.returncode == -signal.SIGKILL and committed >= 3000

    with closing(sqlite3.connect(root / DB_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    cache = RequestCache(root)
    for n in range(committed + 1):
        assert cache.get(key(n)) == answer(n), n
    entries = stored(root)
    assert len(entries) >= committed + 1  # and whatever it wrote after its last line
    for value in entries.values():
        assert isinstance(json.loads(value), dict)
    cache.put(key(0), answer(0, writer=1))  # and it takes new writes
    assert cache.get(key(0)) == answer(0, writer=1)


# -- two processes at once ---------------------------------------------------------------------

SHARED = 100


def _write_and_read(root: str, writer: int, count: int) -> None:
    """Write ``count`` entries of one's own and the shared ones, reading the other's as it goes;
    exit 0 only if every write succeeded and every hit was a whole, right answer."""
    cache = RequestCache(Path(root))
    other = 1 - writer
    for n in range(count):
        cache.put(key(n, writer), answer(n, writer))
        if n < SHARED:
            cache.put(key(n, 9), answer(n, writer))  # the same key from both processes
        hit = cache.get(key(n, other))
        if hit is not None and hit != answer(n, other):
            sys.exit(2)
        shared = cache.get(key(n % SHARED, 9))
        if shared is not None and shared not in (answer(n % SHARED, 0), answer(n % SHARED, 1)):
            sys.exit(3)
    sys.exit(1 if cache.write_errors else 0)


def test_two_processes_write_and_read_one_cache_at_once(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    count = 1500
    procs = [context.Process(target=_write_and_read, args=(str(root), w, count)) for w in range(2)]
    for process in procs:
        process.start()  # both create the database at once
    for process in procs:
        process.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = RequestCache(root)
    for writer in range(2):
        for n in range(count):
            assert cache.get(key(n, writer)) == answer(n, writer)
    for n in range(SHARED):
        assert cache.get(key(n, 9)) in (answer(n, 0), answer(n, 1))
    assert len(stored(root)) == 2 * count + SHARED


def test_a_pickled_forked_or_threaded_cache_opens_its_own_connection(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    cache.put(key(1), answer(1))
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.get(key(1)) == answer(1)
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(cache.get(key(1))))
    thread.start()
    thread.join()
    assert found == [answer(1)]
    pid = os.fork()
    if pid == 0:  # the child uses the parent's object: it must not use the parent's connection
        try:
            cache.put(key(2), answer(2))
            os._exit(0 if cache.get(key(1)) == answer(1) and not cache.write_errors else 1)
        finally:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    assert cache.get(key(2)) == answer(2) and cache.write_errors == 0


# -- formats it does not know ------------------------------------------------------------------


def _database(path: Path, *pragmas: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE answers (key BLOB PRIMARY KEY, answer BLOB NOT NULL)")
        for pragma in pragmas:
            conn.execute(pragma)
        conn.commit()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: _database(p, f"PRAGMA application_id={APPLICATION_ID}",
                                f"PRAGMA user_version={FORMAT + 1}"),
            f"has format {FORMAT + 1}, written by a newer release",
        ),
        (
            lambda p: _database(p, f"PRAGMA application_id={APPLICATION_ID}",
                                f"PRAGMA user_version={FORMAT - 1}"),
            f"has format {FORMAT - 1}, written by an older release",
        ),
        (lambda p: _database(p), "another program's database"),
        (lambda p: p.write_bytes(b"not a database " * 500), "is not a usable request cache"),
    ],
    ids=["newer format", "older format", "another program's", "not a database"],
)  # fmt: skip
def test_a_database_it_does_not_know_is_refused_clearly_and_left_alone(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = tmp_path / DB_NAME
    make(path)
    before = path.read_bytes()
    cache = RequestCache(tmp_path)
    with pytest.raises(ConfigError) as refused:
        cache.check_writable()
    assert message in str(refused.value) and str(path) in str(refused.value)
    assert "--cache-dir" in str(refused.value) and "--no-cache" in str(refused.value)
    # used without the check, it is a miss and a write error, never a crash or a write
    assert cache.get(key(1)) is None
    cache.put(key(1), answer(1))
    assert cache.write_errors == 1
    assert path.read_bytes() == before


# -- moving a one-file-per-request cache in ----------------------------------------------------


def _old_entry(root: Path, entry_key: str, body: bytes | None = None) -> None:
    """An entry as the one-file-per-request release wrote it (format 1)."""
    path = root / entry_key[:2] / f"{entry_key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"format": 1, "key": entry_key, "answer": answer(int(entry_key[4:], 16))}
    path.write_bytes(body if body is not None else json.dumps(entry).encode())


def test_an_old_cache_is_moved_in_once_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = Path(shutil.copytree(FIXTURE_CACHE, tmp_path / "cache"))  # the previous release's
    old = {p.stem: json.loads(p.read_bytes())["answer"] for p in root.glob("*/*.json")}
    for n in range(40):
        _old_entry(root, key(n))
    _old_entry(root, key(40), b'{"format": 1, "key": "')  # torn
    _old_entry(root, key(41), json.dumps({"format": 1, "key": key(0), "answer": {}}).encode())
    _old_entry(root, key(42), json.dumps({"format": 1, "key": key(42), "answer": "x"}).encode())
    (root / key(43)[:2] / ".tmp-killed.json").write_bytes(b"{")  # a writer killed mid-file
    newer = {"content": "asked again since", "finish_reason": "stop"}
    with closing(open_store(root / DB_NAME)) as conn:  # the store, before any move
        conn.execute("INSERT INTO answers VALUES (?, ?)", (bytes.fromhex(key(5)), b'{"content":'
                     b' "asked again since", "finish_reason": "stop"}'))  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="flows.llm.cache"):
        RequestCache(root).check_writable()

    [message] = [r.getMessage() for r in caplog.records]
    assert f"moved {len(old) + 40} entries" in message and "3 unreadable" in message
    assert [p.name for p in root.iterdir() if not p.name.startswith(DB_NAME)] == []
    fresh = RequestCache(root)
    for old_key, old_answer in old.items():
        assert fresh.get(old_key) == old_answer
    for n in range(40):
        assert fresh.get(key(n)) == (newer if n == 5 else answer(n))
    assert fresh.get(key(41)) is None and fresh.get(key(0)) == answer(0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flows.llm.cache"):
        RequestCache(root).check_writable()
    assert caplog.records == []  # once


MOVE = """
import sys
from pathlib import Path
from flows.llm.cache import RequestCache
RequestCache(Path(sys.argv[1])).check_writable()
"""


def test_a_move_killed_halfway_leaves_a_usable_cache_and_finishes_next_time(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cache"
    keys = [f"{folder:02x}{n:062x}" for folder in range(256) for n in range(40)]
    for entry_key in keys:
        _old_entry(root, entry_key)
    mover = subprocess.Popen([sys.executable, "-c", MOVE, str(root)], cwd=REPO)
    moved = 0
    while mover.poll() is None and not moved:  # kill it once a first folder is committed
        if (root / DB_NAME).exists():
            with suppress(sqlite3.OperationalError):  # still being created
                moved = len(stored(root))
        time.sleep(0.002)
    mover.kill()
    mover.wait(30)
    left = [p for p in root.iterdir() if p.is_dir()]
    assert mover.returncode == -signal.SIGKILL, "the move finished before the kill"
    assert 0 < moved < len(keys) and left  # killed halfway

    half = RequestCache(root)  # opens and moves the rest: every entry, moved before or now
    for entry_key in keys:
        assert half.get(entry_key) == answer(int(entry_key[4:], 16))
    assert len(stored(root)) == len(keys)
    assert [p for p in root.iterdir() if p.is_dir()] == []
