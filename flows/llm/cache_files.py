"""Moving a format-1 request cache (one JSON file per request) into the database, once.

Format 1 kept each answer in ``root/<2 hex>/<key>.json`` as
``{"format": 1, "key": "<key>", "answer": {...}}``. Each two-hex folder is moved in one
transaction: its entries are inserted (never over an entry the database already holds, which
is at least as new), committed, and only then its files deleted. A kill at any point leaves a
usable cache: a folder is either still there, to be moved again by the next run (the inserts
are idempotent), or already in the database. Two processes moving at once insert the same
rows and delete the same files, harmlessly.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["Moved", "has_file_entries", "move_file_entries"]

OLD_FORMAT = 1
_FOLDER = re.compile(r"[0-9a-f]{2}")
_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass
class Moved:
    """What a move did: entries moved into the database, and old files skipped as unreadable
    (torn, corrupt, another format, or text that is not valid Unicode: each was a miss)."""

    moved: int = 0
    skipped: int = 0


def _folders(root: Path) -> list[Path]:
    """The two-hex folders of the format-1 layout under ``root``."""
    try:
        with os.scandir(root) as entries:
            found = [Path(e.path) for e in entries if _FOLDER.fullmatch(e.name) and e.is_dir()]
    except OSError:
        return []
    return sorted(found)


def has_file_entries(root: Path) -> bool:
    """Whether ``root`` still holds folders of the format-1 layout (one ``scandir``)."""
    return bool(_folders(root))


def _answer(path: Path) -> bytes | None:
    """The answer of a format-1 entry file as UTF-8 JSON, or None if it is not a usable one."""
    key = path.name.removesuffix(".json")
    if not path.name.endswith(".json") or not _KEY.fullmatch(key):
        return None
    try:
        entry = orjson.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != OLD_FORMAT or entry.get("key") != key:
        return None
    answer = entry.get("answer")
    return orjson.dumps(answer) if isinstance(answer, dict) else None


def move_file_entries(root: Path, conn: sqlite3.Connection) -> Moved:
    """Move every format-1 entry under ``root`` into the ``answers`` table of ``conn``.

    Temp files of killed writers and unreadable entries are deleted with the folder (they
    were misses); a folder that cannot be read or deleted is left for the next run.

    Raises:
        sqlite3.Error: the database could not be written (nothing of that folder is lost).
    """
    done = Moved()
    for folder in _folders(root):
        try:
            files = sorted(folder.iterdir())
        except OSError:
            continue
        rows: list[tuple[bytes, bytes]] = []
        for path in files:
            answer = _answer(path)
            if answer is not None:
                rows.append((bytes.fromhex(path.name[:64]), answer))
            elif not path.name.startswith(".tmp-"):
                done.skipped += 1
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO answers (key, answer) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.moved += len(rows)
        try:
            for path in files:
                path.unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            pass  # a file another process wrote meanwhile: moved by the next run
    return done
