"""The temporary Prefect server's own process: ``python -m flows.ops.temp_server_process``.

Started by :class:`flows.ops.temp_server.TemporaryServer`, never by hand. It serves the same app
Prefect's ephemeral mode serves (``prefect.server.api.server:create_app``, on the listening
socket its parent bound), with two differences:

- it ends with its parent, even after the parent's ``kill -9`` (``PR_SET_PDEATHSIG``), or,
  started with ``--idle-timeout`` (a server kept warm between runs, see
  :mod:`flows.ops.warm_server`), once no run has used it for that long;
- asked to stop, it first lets its services finish the events it was sent. Prefect's services
  read events from in-memory queues and, when stopped, cancel whatever they are writing and
  drop what is still queued: a run's last task runs were lost and each cancelled write logged
  an ``Error flushing`` traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from flows.ops.parent import exit_with_parent

__all__ = ["SETTLE_LIMIT_S", "events_backlog", "main"]

SETTLE_LIMIT_S = 60.0
"""How long a stopping server may spend on the events it still holds (about 10,000 events
at the rate measured with the batch settings; more than a run of the advised size sends)."""

_MEMORY_BROKER = "prefect.server.utilities.messaging.memory"
_FLUSH_MARGIN_S = 0.5
_STALLED_S = 5.0  # a backlog that stops moving (a dropped or dead-lettered message) is left


def events_backlog() -> int | None:
    """Messages delivered to the server's in-memory queues and not yet handled in full.

    ``None`` where the server does not use the in-memory broker (a Redis broker keeps its
    messages itself, so nothing is lost by stopping).
    """
    from prefect.settings import get_current_settings

    if get_current_settings().server.events.messaging_broker != _MEMORY_BROKER:
        return None
    from prefect.server.utilities.messaging import memory

    try:
        queued = sum(
            sub._queue.qsize() + sub._retry.qsize()
            for topic in memory.Topic._topics.values()
            for sub in topic._subscriptions
        )
        # a message taken off a queue counts as consumed only once its handler has returned
        in_hand = sum(max(0, m["published"] - m["consumed"]) for m in memory.METRICS.values())
    except (AttributeError, KeyError):  # another Prefect's internals: stop as Prefect would
        return None
    return max(queued, in_hand)


async def settle_events(limit_s: float = SETTLE_LIMIT_S) -> None:
    """Wait until the services have handled every event sent, then for their last flush.

    Bounded by ``limit_s``, and by a backlog that no longer moves.

    The task-run recorder writes a partial batch on its next periodic flush; stopping while
    that write runs cancels it (an error and a traceback), so the wait covers one flush
    interval after the queues ran dry.
    """
    from prefect.settings import get_current_settings

    deadline = time.monotonic() + limit_s
    backlog, moved_at = events_backlog(), time.monotonic()
    while backlog and time.monotonic() < min(deadline, moved_at + _STALLED_S):
        await asyncio.sleep(0.05)
        backlog, before = events_backlog(), backlog
        if backlog != before:
            moved_at = time.monotonic()
    if backlog is not None:
        interval = get_current_settings().server.services.task_run_recorder.flush_interval
        await asyncio.sleep(min(interval + _FLUSH_MARGIN_S, max(0.0, deadline - time.monotonic())))


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def settling_lifespan(lifespan: Lifespan) -> Lifespan:
    """``lifespan`` whose shutdown first waits for :func:`settle_events`."""

    @asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            yield state
            await settle_events()

    return wrapped


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--parent-pid", type=int, help="end with this process")
    group.add_argument("--idle-timeout", type=float, help="seconds unused before it stops")
    parser.add_argument("--home", type=Path, help="with --idle-timeout: its state folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve Prefect's API on the inherited socket until SIGTERM, the parent's death or (kept
    warm) its idle timeout."""
    args = _parse(argv)
    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid)
    else:
        from flows.ops.warm_server import stop_when_idle

        threading.Thread(
            target=stop_when_idle, args=(args.home, args.idle_timeout), daemon=True
        ).start()
    import uvicorn
    from prefect.server.api.server import create_app

    app = create_app()  # ephemeral and final: PREFECT__SERVER_EPHEMERAL/_FINAL in the environment
    app.router.lifespan_context = settling_lifespan(app.router.lifespan_context)
    config = uvicorn.Config(
        app, log_level="error", lifespan="on", timeout_graceful_shutdown=5, access_log=False
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
