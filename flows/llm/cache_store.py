"""The request cache's database: one SQLite file in WAL mode, opened and checked per process.

The file carries its format in two header fields: ``PRAGMA application_id`` says it is a
prefect-refine request cache, ``PRAGMA user_version`` which format. A release that finds
another program's database, a file that is not a database, or a format it does not know
refuses it with a ConfigError naming the file and what to do; it never reads, rewrites or
deletes it.

Durability: WAL with ``synchronous=NORMAL``, and every put its own transaction. A commit
appends its pages to the WAL and returns without fsync (the WAL is synced at checkpoints), so
a killed process loses nothing it committed and at most the put it was in; a power loss may
lose the last commits but never corrupts the database (SQLite's WAL recovery drops a torn
tail). ``FULL`` would add an fsync to every answer for a guarantee a cache does not need:
a lost entry costs one request again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from refine.errors import ConfigError

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "DB_NAME", "FORMAT", "open_store"]

DB_NAME = "requests.sqlite3"
APPLICATION_ID = 0x52464E43  # "RFNC": a prefect-refine request cache
FORMAT = 2
"""Format of the database; format 1 was one JSON file per request (see cache_files)."""
BUSY_TIMEOUT_S = 10.0
"""How long a statement waits for another process's write lock before SQLITE_BUSY (s)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key BLOB PRIMARY KEY,   -- the 32 bytes of the request's SHA-256
    answer BLOB NOT NULL    -- the answer as UTF-8 JSON
) WITHOUT ROWID
"""


def open_store(path: Path) -> sqlite3.Connection:
    """A connection to the cache database at ``path``, created in the current format if new.

    Autocommit (each statement its own transaction), WAL, ``synchronous=NORMAL`` and a busy
    timeout of :data:`BUSY_TIMEOUT_S`. The connection belongs to the calling thread.

    Raises:
        ConfigError: the file cannot be opened or written, is not a database, belongs to
            another program, or holds a format this release does not know.
    """
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise _refused(path, exc) from None
    try:
        _check_format(conn, path)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
        conn.execute("PRAGMA synchronous=NORMAL")  # per connection; see the module docstring
    except sqlite3.Error as exc:
        conn.close()
        raise _refused(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_format(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file; refuse a file that is not ours or not this format."""
    app, version = _header(conn)
    if app == 0 and version == 0:  # a new, empty file (or another program's: look inside)
        conn.execute("BEGIN IMMEDIATE")  # two processes creating it at once: one does
        try:
            app, version = _header(conn)
            empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if app == 0 and version == 0 and empty:
                conn.execute(SCHEMA)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={FORMAT}")
                app, version = APPLICATION_ID, FORMAT
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if app != APPLICATION_ID:
        raise ConfigError(
            f"{path} is not a prefect-refine request cache (another program's database): "
            "move it away, choose another --cache-dir, or pass --no-cache"
        )
    if version != FORMAT:
        newer = "a newer" if version > FORMAT else "an older"
        raise ConfigError(
            f"the request cache {path} has format {version}, written by {newer} release of "
            f"prefect-refine; this release reads format {FORMAT}: run that release, choose "
            "another --cache-dir, or pass --no-cache (deleting the folder clears the cache)"
        )


def _header(conn: sqlite3.Connection) -> tuple[int, int]:
    """The file's application id and format number."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(app), int(version)


def _refused(path: Path, exc: sqlite3.Error) -> ConfigError:
    """The ConfigError for a database SQLite cannot open, read or write."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        what = f"{path} is not a usable request cache database ({exc})"
        fix = "move it away, choose another --cache-dir, or pass --no-cache"
    else:
        what = f"the request cache {path} is not writable ({exc})"
        fix = "choose another --cache-dir or pass --no-cache"
    return ConfigError(f"{what}: {fix}")
