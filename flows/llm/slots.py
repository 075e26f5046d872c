"""A slot of a Prefect global concurrency limit, held around one request on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from refine.errors import ConfigError, EndpointError

__all__ = ["prefect_slot"]


@asynccontextmanager
async def prefect_slot(name: str, wait_s: float) -> AsyncIterator[None]:
    """Hold one slot of the Prefect global concurrency limit ``name``; a missing limit is a
    configuration error, not a reason to send requests unlimited."""
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, concurrency

    async with AsyncExitStack() as held:
        try:  # only the acquisition: a deadline expiring inside the call is not ours to rename
            await held.enter_async_context(
                concurrency(name, occupy=1, strict=True, timeout_seconds=wait_s)
            )
        except TimeoutError:
            raise EndpointError(
                f"no slot of global concurrency limit {name!r} came free within {wait_s:g} s"
            ) from None
        except ConcurrencySlotAcquisitionError as exc:
            raise ConfigError(
                f"global concurrency limit {name!r} ([endpoint] global_limit) is not usable: "
                f"{exc}; create it with: prefect gcl create {name} --limit N"
            ) from None
        yield
