"""The endpoint's Files and Batch APIs, as the ``openai`` SDK calls them, under the retry policy.

``POST /v1/files`` (``purpose=batch``), ``POST /v1/batches``, ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``, ``GET /v1/batches`` and ``GET /v1/files/{id}/content``
(https://platform.openai.com/docs/api-reference/batch). Transient failures (connection, 429,
5xx) are retried as chat requests are (:mod:`flows.llm.retry`); a 401/403 stops the run, and a
404 on the Files or Batch API says the endpoint has none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai
from pydantic import SecretStr

from flows.config.endpoint import EndpointConfig, RetryConfig
from flows.llm.redact import redact
from flows.llm.retry import build_retrying
from refine.errors import EndpointError, FatalEndpointError

__all__ = ["TERMINAL", "BatchAPI", "BatchNotFound"]

T = TypeVar("T")

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses after which nothing changes (https://platform.openai.com/docs/guides/batch,
"Checking the status of a batch")."""


class BatchNotFound(EndpointError):
    """The provider does not know a batch or file id (404): it was deleted, or is another
    provider's."""


class BatchAPI:
    """One run's calls to the Files and Batch APIs; counts its HTTP attempts."""

    def __init__(
        self, endpoint: EndpointConfig, retry: RetryConfig, api_key: SecretStr | None
    ) -> None:
        self.url = endpoint.base_url or ""
        self.retry = retry
        self.http_attempts = 0
        self._secret = api_key.get_secret_value() if api_key else None
        self._sdk = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=self._secret or "no-key",
            max_retries=0,
            timeout=openai.Timeout(retry.call_deadline_s, connect=retry.connect_timeout_s),
        )

    async def _call(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        submits: bool = False,
        by_id: bool = False,
    ) -> T:
        """``call`` under the retry policy. ``submits``: a 400/413/422 refuses what every
        request of the run would send, so it stops the run; ``by_id``: a 404 means the id is
        unknown (:class:`BatchNotFound`), not that the endpoint has no Batch API."""
        attempts = 0
        try:
            async for attempt in build_retrying(self.retry, sleep=asyncio.sleep):
                with attempt:
                    attempts += 1
                    self.http_attempts += 1
                    return await call()
        except openai.APIStatusError as exc:
            message = redact(_provider_message(exc), self._secret)
            status = exc.status_code
            if status in (400, 413, 422) and submits:
                raise FatalEndpointError(  # the same for every request: stop the run once
                    f"{self.url} refused {what} ({status}): {message}", status=status, url=self.url
                ) from None
            if status in (401, 403):
                raise FatalEndpointError(
                    f"{self.url} refused {what} ({status}): {message}", status=status, url=self.url
                ) from None
            if status == 404 and by_id:
                raise BatchNotFound(
                    f"{self.url}: {what}: not found ({message})", status=404
                ) from None
            if status == 404:
                raise FatalEndpointError(
                    f"{self.url} has no Batch API ({what} answered 404: {message}); check that "
                    "--base-url is the API's root (e.g. https://api.openai.com/v1), or run "
                    'without --batch-api (mode = "online")',
                    status=404,
                    url=self.url,
                ) from None
            raise EndpointError(
                f"{self.url}: {what} failed after {attempts} attempt(s): {status} {message}",
                status=status,
                url=self.url,
            ) from None
        except openai.APIConnectionError as exc:
            raise EndpointError(
                f"cannot reach {self.url} for {what} after {attempts} attempt(s): {exc.message}",
                url=self.url,
            ) from None
        raise AssertionError("unreachable: the retry policy reraises")  # pragma: no cover

    async def upload(self, name: str, data: bytes) -> str:
        """Upload a batch input file; its file id."""
        made = await self._call(
            "uploading a batch input file",
            lambda: self._sdk.files.create(file=(name, data, "application/jsonl"), purpose="batch"),
            submits=True,
        )
        return made.id

    async def create(self, file_id: str, window: str, metadata: dict[str, str]) -> dict[str, Any]:
        """Create a batch of the chat requests in ``file_id``; the batch object."""
        made = await self._call(
            "creating a batch",
            lambda: self._sdk.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window=window,  # type: ignore[arg-type]
                metadata=metadata,
            ),
            submits=True,
        )
        return made.model_dump()

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        """The batch object now. Raises BatchNotFound for an unknown id."""
        found = await self._call(
            f"reading batch {batch_id}", lambda: self._sdk.batches.retrieve(batch_id), by_id=True
        )
        return found.model_dump()

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask the provider to cancel a batch; the batch object (``cancelling``)."""
        done = await self._call(
            f"cancelling batch {batch_id}", lambda: self._sdk.batches.cancel(batch_id)
        )
        return done.model_dump()

    async def content(self, file_id: str) -> bytes:
        """The bytes of an output or error file. Raises BatchNotFound for an unknown id."""
        got = await self._call(
            f"reading file {file_id}", lambda: self._sdk.files.content(file_id), by_id=True
        )
        return got.content

    async def find_by_input(self, file_id: str, uploaded_at: float) -> dict[str, Any] | None:
        """The batch created from input file ``file_id`` (uploaded at ``uploaded_at``, Unix
        seconds), searched in the provider's list, newest first, down to the batches created
        before the upload (an hour's margin for clocks); None when there is none."""

        async def search() -> dict[str, Any] | None:
            async for batch in self._sdk.batches.list(limit=100):
                if batch.input_file_id == file_id:
                    return batch.model_dump()
                if batch.created_at < uploaded_at - 3600:
                    return None
            return None

        return await self._call("listing batches", search)

    async def aclose(self) -> None:
        await self._sdk.close()


def _provider_message(exc: openai.APIStatusError) -> str:
    """The provider's own words for a refusal (``error.message`` of its body), else the SDK's."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(exc.message)
