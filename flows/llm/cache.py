"""A content-addressed request cache: one JSON file per request, written atomically.

The key hashes everything that changes the answer (the endpoint, model, messages, sampling
parameters, extra body fields, step and sample index) and never the API key. A torn, corrupt or
foreign entry reads as a miss, never as a wrong answer; concurrent writers of the same key each
replace the file whole, so a reader sees one complete entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from refine.errors import ConfigError

__all__ = ["RequestCache", "request_key"]

FORMAT = 1


def request_key(request: dict[str, Any]) -> str:
    """The SHA-256 of the request's canonical JSON form.

    ``surrogatepass``: a lone surrogate (half of an emoji cut from its pair) still gets a key of
    its own instead of crashing the run; text that is valid Unicode encodes as plain UTF-8, so
    its keys are the ones earlier releases wrote.
    """
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _entry_bytes(key: str, answer: dict[str, Any]) -> bytes:
    """The entry as UTF-8 JSON; text that is not valid Unicode is written as ``\\u`` escapes.

    Such an entry reads back as a miss (orjson refuses a lone surrogate), which costs one
    request again and never a wrong answer.
    """
    entry = {"format": FORMAT, "key": key, "answer": answer}
    try:
        return json.dumps(entry, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(entry, ensure_ascii=True).encode("ascii")


class RequestCache:
    """Answers of earlier requests on disk, under ``root/<2 hex>/<key>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.write_errors = 0

    def check_writable(self) -> None:
        """Raise ConfigError now, before any request, if entries cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(
                f"cache folder {self.root} is not writable ({exc.strerror}); "
                "choose another with --cache-dir or pass --no-cache"
            ) from None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer for ``key``, or None when absent or unreadable."""
        try:
            entry = orjson.loads(self._path(key).read_bytes())
        except (OSError, ValueError, RecursionError):  # a corrupt entry, however broken: a miss
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
            return None
        answer = entry.get("answer")
        return answer if isinstance(answer, dict) else None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        """Store ``answer`` for ``key``: write a temp file beside it, then rename it into place.

        No fsync: a killed process leaves complete files in the page cache, and after a power
        loss an empty or torn file is still only a miss.
        """
        path = self._path(key)
        data = _entry_bytes(key, answer)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        except OSError:
            self.write_errors += 1  # a full disk costs a future cache hit, never this answer
            return
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            self.write_errors += 1
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
