"""A content-addressed request cache: answers kept in one SQLite database per cache folder.

The key hashes everything that changes the answer (the endpoint, model, messages, sampling
parameters, extra body fields, step and sample index) and never the API key. Entries live in
``root/requests.sqlite3`` (see :mod:`flows.llm.cache_store` for the format marker and why a
killed run loses at most the entry it was writing); a cache folder of the one-file-per-request
layout of earlier releases is moved into it on first use (:mod:`flows.llm.cache_files`). An
entry that does not read back as a JSON object is a miss, never a wrong answer; two processes
may read and write one folder at once (WAL: readers never wait, writers take turns).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from flows.llm.cache_files import has_file_entries, move_file_entries
from flows.llm.cache_store import DB_NAME, open_store
from refine.errors import ConfigError

__all__ = ["RequestCache", "request_key"]

logger = logging.getLogger(__name__)

WRITE_ATTEMPTS = 5
"""Tries of one put while another process holds the write lock past the busy timeout."""
_SELECT = "SELECT answer FROM answers WHERE key = ?"
_UPSERT = "INSERT INTO answers (key, answer) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET answer = excluded.answer"  # noqa: E501


def request_key(request: dict[str, Any]) -> str:
    """The SHA-256 of the request's canonical JSON form.

    ``surrogatepass``: a lone surrogate (half of an emoji cut from its pair) still gets a key of
    its own instead of crashing the run; text that is valid Unicode encodes as plain UTF-8, so
    its keys are the ones earlier releases wrote.
    """
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _answer_bytes(answer: dict[str, Any]) -> bytes:
    """The answer as UTF-8 JSON; text that is not valid Unicode is written as ``\\u`` escapes.

    Such an entry reads back as a miss (orjson refuses a lone surrogate), which costs one
    request again and never a wrong answer.

    Raises:
        TypeError: the answer holds something JSON cannot write.
    """
    try:
        return orjson.dumps(answer)
    except orjson.JSONEncodeError:
        return json.dumps(answer, ensure_ascii=True).encode("ascii")


class RequestCache:
    """Answers of earlier requests, in ``root/requests.sqlite3``.

    The database is opened lazily, once per process and thread (an sqlite3 connection is never
    shared across threads, nor inherited through a fork: a pickled or forked cache opens its
    own). :meth:`get` and :meth:`put` never raise for the state of the store: a store that
    cannot be opened is a miss and a write error (``write_errors``) so that a run goes on
    without it; :meth:`check_writable` is what reports it, before any request.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / DB_NAME
        self.write_errors = 0
        self._local = threading.local()
        self._broken: str | None = None  # why this process cannot use the store

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "write_errors": self.write_errors}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"])  # type: ignore[misc]
        self.write_errors = state["write_errors"]

    def check_writable(self) -> None:
        """Open the store now (moving a one-file-per-request cache into it) and take its write
        lock once.

        Raises:
            ConfigError: the folder cannot be created or written, or the database there is
                not a request cache of this release's format; the message says what to do.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cache folder {self.root} is not writable ({exc.strerror}); "
                "choose another with --cache-dir or pass --no-cache"
            ) from None
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise ConfigError(
                f"the request cache {self.path} is not writable ({exc}); "
                "choose another with --cache-dir or pass --no-cache"
            ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer for ``key``, or None when absent, unreadable or not an object."""
        conn = self._usable(create=False)
        if conn is None:
            return None
        try:
            row = conn.execute(_SELECT, (bytes.fromhex(key),)).fetchone()
            answer = orjson.loads(row[0]) if row is not None else None
        except (sqlite3.Error, ValueError, TypeError, RecursionError):
            return None  # a damaged row or database, however broken: a miss
        return answer if isinstance(answer, dict) else None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        """Store ``answer`` for ``key`` in a transaction of its own, replacing any entry.

        A store that cannot be written (a full disk, a lock held past every retry) counts in
        ``write_errors``: it costs a future cache hit, never this answer.

        Raises:
            TypeError: the answer holds something JSON cannot write.
            ValueError: ``key`` is not a hex digest.
        """
        row = (bytes.fromhex(key), _answer_bytes(answer))
        conn = self._usable(create=True)
        if conn is None:
            self.write_errors += 1
            return
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                conn.execute(_UPSERT, row)
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if not busy or attempt == WRITE_ATTEMPTS:
                    break
                time.sleep(0.05 * attempt)
            except sqlite3.Error:
                break
        self.write_errors += 1

    def close(self) -> None:
        """Close this thread's connection (the last one to close folds the WAL into the file)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def _usable(self, *, create: bool) -> sqlite3.Connection | None:
        """This thread's connection, or None: the store is unusable, or absent and a read
        should not create it."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if self._broken is not None or not (create or self.root.is_dir()):
            return None
        try:
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            return self._connection()
        except (OSError, ConfigError) as exc:
            self._broken = str(exc)
            return None

    def _connection(self) -> sqlite3.Connection:
        """Open this thread's connection, moving a one-file-per-request cache in first.

        Raises:
            ConfigError: see :func:`flows.llm.cache_store.open_store`.
        """
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = open_store(self.path)
        if has_file_entries(self.root):
            self._move_files(conn)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _move_files(self, conn: sqlite3.Connection) -> None:
        """Move the entries of the one-file-per-request layout into the database, saying so."""
        try:
            moved = move_file_entries(self.root, conn)
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError(
                f"could not move the request cache files in {self.root} into {self.path} "
                f"({exc}); they are kept: free space or pass --no-cache"
            ) from None
        logger.warning(
            "request cache %s: moved %d entries of the one-file-per-request layout into %s%s "
            "(entries keyed by an older release's rules miss once, as before the move)",
            self.root,
            moved.moved,
            DB_NAME,
            f"; {moved.skipped} unreadable old entries removed" if moved.skipped else "",
        )
