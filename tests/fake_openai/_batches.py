"""The Files and Batch APIs' records: uploaded files, batches, and how the next batches behave.

Everything sits behind one lock: the server's loop changes batches while a test thread reads
them (``batches()``, ``files()``) or programs the next ones.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.fake_openai._models import BatchBehaviour

BATCH_FILE_TTL_S = 30 * 24 * 3600  # OpenAI keeps purpose=batch files 30 days by default
WINDOW_S = 24 * 3600  # the only completion window OpenAI accepts, "24h"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_STAMPED = (
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)


def new_id(prefix: str) -> str:
    """A fresh OpenAI-style id such as ``batch_…``, ``file-…`` or ``batch_req_…``."""
    return prefix + uuid.uuid4().hex[:24]


@dataclass(slots=True)
class StoredFile:
    """One file of the Files API (uploaded, or a batch's output or error file)."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def object(self) -> dict[str, Any]:
        """The OpenAI ``file`` object."""
        batch = self.purpose == "batch"
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": self.created_at + BATCH_FILE_TTL_S if batch else None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass(slots=True)
class BatchRecord:
    """One batch as the server runs it; ``object()`` is what the API answers."""

    id: str
    endpoint: str
    input_file_id: str
    input: bytes  # the input file's content when the batch was created
    metadata: dict[str, str] | None
    behaviour: BatchBehaviour
    headers: dict[str, str]  # of the POST /v1/batches, given to the lines' log entries
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating"
    stamps: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    cancel_requested: bool = False
    released: bool = False

    def object(self) -> dict[str, Any]:
        """The OpenAI ``batch`` object."""
        output_tokens = self.output_tokens
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + WINDOW_S,
            **{f"{name}_at": self.stamps.get(name) for name in _STAMPED},
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + output_tokens,
            },
            "metadata": self.metadata,
        }


class BatchStore:
    """Files, batches and the batch behaviours; every method is safe from any thread.

    ``max_requests`` and ``max_bytes`` are OpenAI's limits of one batch input file; a test may
    lower them on an in-process server to check a client's splitting cheaply.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, BatchRecord] = {}  # in creation order
        self._scripted: deque[BatchBehaviour] = deque()
        self._default = BatchBehaviour()
        self.max_requests = 50_000
        self.max_bytes = 200_000_000

    # -- behaviour ---------------------------------------------------------------------------

    def script(self, behaviours: Iterable[BatchBehaviour]) -> None:
        """Queue one-shot behaviours: each ``POST /v1/batches`` takes the next one."""
        with self._lock:
            self._scripted.extend(behaviours)

    def set_default(self, behaviour: BatchBehaviour | None) -> None:
        """The behaviour of every ``POST /v1/batches`` no script answers (``None``: plain)."""
        with self._lock:
            self._default = behaviour or BatchBehaviour()

    def next_behaviour(self) -> BatchBehaviour:
        """The behaviour for a ``POST /v1/batches``: the next scripted one, else the default."""
        with self._lock:
            return self._scripted.popleft() if self._scripted else self._default

    def release(self) -> int:
        """Let every unfinished batch go past its hold point, now or when it gets there; how
        many were released."""
        with self._lock:
            held = [
                b for b in self._batches.values() if not b.released and b.status not in TERMINAL
            ]
            for batch in held:
                batch.released = True
            return len(held)

    def clear(self) -> None:
        """Forget files, batches and behaviours; running batches stop at their next step."""
        with self._lock:
            self._files.clear()
            self._batches.clear()
            self._scripted.clear()
            self._default = BatchBehaviour()

    # -- files -------------------------------------------------------------------------------

    def add_file(self, data: bytes, filename: str, purpose: str) -> StoredFile:
        """Store a new file and return it."""
        stored = StoredFile(new_id("file-"), filename, purpose, data)
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def delete_file(self, file_id: str) -> bool:
        """Delete a file; False when there was none with that id."""
        with self._lock:
            return self._files.pop(file_id, None) is not None

    def files(self) -> list[dict[str, Any]]:
        """Every file's ``file`` object, oldest first."""
        with self._lock:
            return [f.object() for f in self._files.values()]

    # -- batches -----------------------------------------------------------------------------

    def add_batch(self, batch: BatchRecord) -> None:
        with self._lock:
            self._batches[batch.id] = batch

    def batch(self, batch_id: str) -> BatchRecord | None:
        with self._lock:
            return self._batches.get(batch_id)

    def alive(self, batch: BatchRecord) -> bool:
        """False once a reset forgot the batch: its task must stop."""
        with self._lock:
            return self._batches.get(batch.id) is batch

    def object(self, batch: BatchRecord) -> dict[str, Any]:
        """A consistent snapshot of the batch's ``batch`` object."""
        with self._lock:
            return batch.object()

    def batches(self) -> list[dict[str, Any]]:
        """Every batch's ``batch`` object, oldest first."""
        with self._lock:
            return [b.object() for b in self._batches.values()]

    def batch_page(self, limit: int, after: str | None) -> dict[str, Any]:
        """``GET /v1/batches``: newest first, ``limit`` of them after the batch ``after``."""
        with self._lock:
            return _page([b.object() for b in reversed(self._batches.values())], limit, after)

    def file_page(
        self, limit: int, after: str | None, purpose: str | None, newest_first: bool
    ) -> dict[str, Any]:
        """``GET /v1/files``: ``limit`` files of ``purpose`` (any when None) after ``after``."""
        with self._lock:
            chosen = [f.object() for f in self._files.values() if purpose in (None, f.purpose)]
        return _page(chosen[::-1] if newest_first else chosen, limit, after)

    def update(self, batch: BatchRecord, status: str | None = None, **fields: Any) -> None:
        """Set fields of a batch; a new ``status`` also stamps its ``<status>_at`` time."""
        with self._lock:
            for name, value in fields.items():
                setattr(batch, name, value)
            if status is not None:
                batch.status = status
                if status in _STAMPED:
                    batch.stamps[status] = int(time.time())

    def count(self, batch: BatchRecord, ok: bool, usage: dict[str, Any] | None) -> None:
        """Count one answered line (and its tokens, for a 200)."""
        with self._lock:
            if ok:
                batch.completed += 1
            else:
                batch.failed += 1
            if usage is not None:
                batch.input_tokens += _int(usage.get("prompt_tokens"))
                batch.output_tokens += _int(usage.get("completion_tokens"))


def _page(objects: list[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    """A cursor page as OpenAI lists: ``limit`` objects after the one whose id is ``after``."""
    ids = [o["id"] for o in objects]
    start = ids.index(after) + 1 if after in ids else 0
    data = objects[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + len(data) < len(objects),
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
