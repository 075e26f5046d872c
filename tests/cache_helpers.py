"""Reading and spoiling request cache entries the way a test must: straight in the database file,
through a connection of the test's own (never through the RequestCache under test)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from flows.llm.cache_store import DB_NAME

__all__ = ["spoil", "stored"]


def stored(root: Path) -> dict[str, bytes]:
    """Every entry in the cache folder ``root``: the key (hex) and the answer's stored bytes."""
    path = root / DB_NAME
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        return {key.hex(): value for key, value in conn.execute("SELECT key, answer FROM answers")}


def spoil(root: Path, key: str, value: object) -> None:
    """Replace the stored answer of ``key`` with ``value`` (any SQLite value), as damage."""
    with closing(sqlite3.connect(root / DB_NAME, isolation_level=None, timeout=10)) as conn:
        conn.execute("UPDATE answers SET answer = ? WHERE key = ?", (value, bytes.fromhex(key)))
