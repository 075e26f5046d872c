"""The leaky buckets behind ``[endpoint] rpm`` and ``tpm``: Prefect's, shared, or this process's.

A bucket holds at most ``capacity`` units and drains ``decay_per_s`` units a second; taking
``n`` units waits until they fit. What any window of ``W`` seconds lets through is then less
than ``capacity + decay_per_s * W`` (the bucket may start empty). A per-minute limit ``X``
becomes a bucket of a tenth of ``X`` (a short burst) draining the rest over the minute, so that
a bucket's capacity plus one minute's decay is ``X + 1``: whole units taken in any 60 s stay
at most ``X``. The full-minute bucket (capacity ``X``, decay ``X/60``) would let ``2 X`` through
the first minute, and providers that enforce a per-minute limit over shorter periods refuse
such bursts.

Shared: a Prefect global concurrency limit with slot decay per bucket, taken with Prefect's
``rate_limit`` (one API call, repeated while the server answers 423 with its Retry-After), so
every process on the same Prefect server counts against it. Local: ``aiolimiter``'s
``AsyncLimiter``, the same leaky bucket inside this process.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Literal, Protocol

from flows.llm.run_log import run_log
from refine.errors import ConfigError, EndpointError

__all__ = [
    "Bucket",
    "Buckets",
    "Kind",
    "LocalBuckets",
    "PrefectBuckets",
    "describe",
    "number",
    "open_buckets",
]

logger = logging.getLogger(__name__)

Kind = Literal["requests", "tokens"]
BURST_SHARE = 10
"""A bucket holds 1/BURST_SHARE of its per-minute limit (6 seconds' worth), at least 1."""
DECAY_TOLERANCE = 1e-4
"""An existing limit's decay this close (relative) to the config's is the config's."""


@dataclass(frozen=True)
class Bucket:
    """One per-minute limit as a leaky bucket: ``name`` is the Prefect limit's."""

    name: str
    per_minute: int
    capacity: int
    decay_per_s: float

    @classmethod
    def per_minute_limit(cls, name: str, per_minute: int) -> Bucket:
        """The bucket that lets at most ``per_minute`` whole units through any 60 s."""
        capacity = max(1, math.ceil(per_minute / BURST_SHARE))
        return cls(name, per_minute, capacity, (per_minute + 1 - capacity) / 60)


class Buckets(Protocol):
    """Where a request takes its units; ``shared`` says whether other processes count."""

    shared: bool

    def capacity(self, kind: Kind) -> int:
        """The most units one take may ask for."""
        ...

    async def take(self, kind: Kind, amount: int) -> None:
        """Wait until ``amount`` units of ``kind`` fit, and take them."""
        ...


class LocalBuckets:
    """The buckets inside this process (``aiolimiter``): other processes are not counted."""

    shared = False

    def __init__(self, buckets: dict[Kind, Bucket]) -> None:
        from aiolimiter import AsyncLimiter

        self._buckets = buckets
        # AsyncLimiter(max_rate, time_period) holds max_rate and drains max_rate / time_period
        # a second: the bucket's capacity and decay.
        self._limiters = {
            kind: AsyncLimiter(b.capacity, b.capacity / b.decay_per_s)
            for kind, b in buckets.items()
        }

    def capacity(self, kind: Kind) -> int:
        return self._buckets[kind].capacity

    async def take(self, kind: Kind, amount: int) -> None:
        await self._limiters[kind].acquire(amount)


class PrefectBuckets:
    """Prefect global concurrency limits with slot decay, shared by every process of the
    Prefect server; ``capacities`` are the most one take may ask."""

    shared = True

    def __init__(self, buckets: dict[Kind, Bucket], capacities: dict[Kind, int]) -> None:
        self._names = {kind: b.name for kind, b in buckets.items()}
        self._capacities = capacities
        self._turns = {kind: asyncio.Lock() for kind in buckets}

    def capacity(self, kind: Kind) -> int:
        return self._capacities[kind]

    async def take(self, kind: Kind, amount: int) -> None:
        """Take ``amount`` from the Prefect limit, one take of this process at a time.

        Prefect's acquisition service handles a limit's takes one after another, and grants
        every take queued in it even after its caller is cancelled, draining its queue when
        the process exits. A take queued there only when the previous one is granted (the
        others wait for their turn here, which a cancel ends at once) leaves at most one per
        bucket to grant at exit: Ctrl-C ends a paced run in seconds, not minutes.
        """
        from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit

        name = self._names[kind]
        try:  # no timeout: pacing is the point, and a limit with slot decay always drains
            async with self._turns[kind]:
                await rate_limit(name, occupy=amount, strict=True)
        except ConcurrencySlotAcquisitionError as exc:
            raise EndpointError(f"the Prefect rate limit {name!r} is not usable: {exc}") from None


async def open_buckets(buckets: dict[Kind, Bucket]) -> Buckets:
    """Prefect's limits when a Prefect API is configured and answers, else this process's.

    Creates each Prefect limit that is missing and updates one whose limit or decay differ
    from ``buckets`` (a log line says so); one without slot decay stops the run. A Prefect
    API that does not answer gives local buckets, with a warning: other processes are then
    not counted.
    """
    import httpx
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return LocalBuckets(buckets)
    try:
        capacities = {kind: await _ensure_limit(bucket) for kind, bucket in buckets.items()}
    except httpx.TransportError as exc:
        run_log(
            logger,
            logging.WARNING,
            "the Prefect API at %s did not answer (%s): rate limits %s count this process only",
            url,
            type(exc).__name__,
            ", ".join(repr(b.name) for b in buckets.values()),
        )
        return LocalBuckets(buckets)
    return PrefectBuckets(buckets, capacities)


async def _ensure_limit(bucket: Bucket) -> int:
    """Make the Prefect limit of ``bucket`` what the config says: created if missing, updated
    if its limit or decay differ; the capacity of the one in use."""
    from prefect import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            found = await client.read_global_concurrency_limit_by_name(bucket.name)
        except ObjectNotFound:
            create = GlobalConcurrencyLimitCreate(
                name=bucket.name, limit=bucket.capacity, slot_decay_per_second=bucket.decay_per_s
            )
            try:
                await client.create_global_concurrency_limit(create)
            except ObjectAlreadyExists:  # another process created it meanwhile
                found = await client.read_global_concurrency_limit_by_name(bucket.name)
            else:
                run_log(
                    logger,
                    logging.INFO,
                    "created the Prefect rate limit %r: %s",
                    bucket.name,
                    describe(bucket.capacity, bucket.decay_per_s),
                )
                return bucket.capacity
        if found.slot_decay_per_second <= 0:
            raise ConfigError(
                f"the Prefect limit {bucket.name!r} has no slot decay: it is a concurrency "
                "limit, not a rate limit; delete it (prefect gcl delete NAME) or set another "
                "[endpoint] rate_limit_name"
            )
        if found.limit != bucket.capacity or not math.isclose(
            found.slot_decay_per_second, bucket.decay_per_s, rel_tol=DECAY_TOLERANCE
        ):
            # the config decides: a limit outlives its runs (it lives in the Prefect database)
            update = GlobalConcurrencyLimitUpdate(
                limit=bucket.capacity, slot_decay_per_second=bucket.decay_per_s
            )
            await client.update_global_concurrency_limit(bucket.name, update)
            run_log(
                logger,
                logging.INFO,
                "updated the Prefect rate limit %r to the config's: from %s to %s",
                bucket.name,
                describe(found.limit, found.slot_decay_per_second),
                describe(bucket.capacity, bucket.decay_per_s),
            )
    if not found.active:
        run_log(
            logger, logging.WARNING, "the Prefect rate limit %r is inactive: no limit", bucket.name
        )
    return bucket.capacity


def describe(capacity: int, decay_per_s: float) -> str:
    """A bucket in words: ``20 per minute (holds 2, drains 0.317/s)``.

    The per minute is what the bucket lets through any 60 s, ``capacity + 60 * decay - 1``
    rounded down (a bucket made from X gives X back).
    """
    per_minute = math.floor(capacity + 60 * decay_per_s - 1 + 1e-6)
    return f"{per_minute:,} per minute (holds {capacity:,}, drains {number(decay_per_s)}/s)"


def number(value: float) -> str:
    """``value`` for a reader: ``0.317``, ``12``, ``250,000``; never an exponent."""
    if value >= 100:
        return f"{value:,.0f}"
    text = f"{value:,.3f}" if value >= 0.01 else f"{value:.6f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
