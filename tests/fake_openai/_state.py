"""The fake server's programmable behaviour and request log, shared by its thread and callers."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson

from tests.fake_openai._batches import BatchStore
from tests.fake_openai._models import ConfigUpdate, LogEntry, Replies, Reply

_UNSET: Any = object()


def _as_reply(reply: Reply | Mapping[str, Any]) -> Reply:
    return reply if isinstance(reply, Reply) else Reply.model_validate(reply)


class FakeState:
    """Scripts, faults, latency and the log; every method is safe to call from any thread.

    The server's event loop reads it on each request while a test thread scripts it, so all
    mutable parts sit behind one lock that is held only for a few dictionary operations.
    """

    def __init__(self, *, max_log: int | None = None) -> None:
        self._lock = threading.Lock()
        self._max_log = max_log
        self.latency = 0.0
        self.token_rate: float | None = None
        self._scripts: list[tuple[bytes | None, deque[Reply]]] = []
        self._fail_fraction = 0.0
        self._fail_reply = Reply(status=500)
        self._rng = random.Random(0)
        self._log: deque[LogEntry] = deque(maxlen=max_log)
        self.seen = 0  # requests received, also when the log keeps none (benchmarks)
        self.first_seen_at: float | None = None  # time.time() of the first, for cross-process use
        self.batch_store = BatchStore()  # the Files and Batch APIs' files, batches, behaviours

    # -- programming -------------------------------------------------------------------------

    def script(self, replies: Replies, match: str | None = None) -> None:
        """Queue replies for requests whose canonical messages JSON contains ``match``."""
        queue = deque(_as_reply(r) for r in replies)
        key = None if match is None else match.encode()
        with self._lock:
            self._scripts.append((key, queue))

    def set_latency(self, seconds: float, token_rate: float | None = None) -> None:
        """Delay every request by ``seconds``, plus completion tokens / ``token_rate`` if set."""
        self.configure(ConfigUpdate(latency=seconds, token_rate=token_rate))

    def fail_rate(
        self,
        status: int,
        fraction: float,
        headers: Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        """Answer a seeded random ``fraction`` of unscripted requests with ``status``."""
        self.configure(
            ConfigUpdate(
                fail_status=status,
                fail_fraction=fraction,
                fail_headers=dict(headers or {}),
                fail_seed=seed,
            )
        )

    def configure(self, update: ConfigUpdate) -> None:
        """Apply the fields set in ``update``; the control endpoint's single entry point."""
        given = update.model_fields_set
        with self._lock:
            if "latency" in given:
                self.latency = update.latency or 0.0
            if "token_rate" in given:
                self.token_rate = update.token_rate or None
            if "fail_fraction" in given:
                self._fail_fraction = update.fail_fraction or 0.0
            if update.fail_status is not None:
                self._fail_reply = self._fail_reply.model_copy(
                    update={"status": update.fail_status}
                )
            if update.fail_headers is not None:
                headers = update.fail_headers
                self._fail_reply = self._fail_reply.model_copy(update={"headers": headers})
            if "fail_seed" in given:
                self._rng = random.Random(update.fail_seed or 0)

    def reset(self) -> None:
        """Forget scripts, faults, latency, the log, and every file, batch and batch behaviour."""
        self.batch_store.clear()
        with self._lock:
            self._scripts.clear()
            self.latency = 0.0
            self.token_rate = None
            self._fail_fraction = 0.0
            self._fail_reply = Reply(status=500)
            self._rng = random.Random(0)
            self._log.clear()
            self.seen, self.first_seen_at = 0, None

    # -- per request -------------------------------------------------------------------------

    def next_reply(self, messages_json: bytes) -> tuple[Reply | None, bool]:
        """The reply for a request and whether it came from a script; ``None`` = default policy."""
        if not self._scripts and not self._fail_fraction:
            return None, False
        with self._lock:
            for index, (match, queue) in enumerate(self._scripts):
                if queue and (match is None or match in messages_json):
                    reply = queue.popleft()
                    if not queue:
                        del self._scripts[index]
                    return reply, True
            if self._fail_fraction and self._rng.random() < self._fail_fraction:
                return self._fail_reply, False
        return None, False

    def record(self, entry: LogEntry) -> None:
        """Count a request and append it to the log (no log when ``max_log`` is 0)."""
        with self._lock:
            self.seen += 1
            if self.first_seen_at is None:
                self.first_seen_at = time.time()
            if self._max_log != 0:
                self._log.append(entry)

    def finish(
        self,
        entry: LogEntry,
        answered: float | None,
        status: int | None,
        content: str | None = None,
    ) -> None:
        """Fill in how a logged request was answered."""
        with self._lock:
            entry.answered = answered
            entry.status = status
            entry.content = content

    # -- reading the log ---------------------------------------------------------------------

    @property
    def requests(self) -> list[LogEntry]:
        """A snapshot of the log, oldest first."""
        with self._lock:
            return [copy.copy(entry) for entry in self._log]

    def chat_requests(self) -> list[LogEntry]:
        """Only the chat completion requests of the log."""
        return [e for e in self.requests if e.path.endswith("/chat/completions")]

    def clear_log(self) -> None:
        """Empty the log, keeping scripts and faults."""
        with self._lock:
            self._log.clear()

    def stats_json(self) -> bytes:
        """Counters for ``GET /_control/stats``: requests seen and when the first came."""
        with self._lock:
            return orjson.dumps({"requests": self.seen, "first_seen_at": self.first_seen_at})

    def log_json(self) -> bytes:
        """The log serialized for ``GET /_control/log``."""
        with self._lock:
            return orjson.dumps({"requests": list(self._log)})
