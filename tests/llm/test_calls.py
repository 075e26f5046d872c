"""ModelCalls' ``keep`` predicate over real HTTP: an answer it refuses is neither written to the
request cache nor served from it (an entry an earlier release wrote is asked again)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from flows.config.run import EndpointConfig, RetryConfig
from flows.llm.cache import RequestCache
from flows.llm.calls import ModelCalls
from flows.llm.client import ChatClient
from tests.cache_helpers import stored
from tests.fake_openai import FakeOpenAI, Reply

MESSAGES = [{"role": "user", "content": "Summarize: rain all week."}]


def _not_chatter(content: str) -> bool:
    return not content.startswith("Sure!")


async def test_an_answer_keep_refuses_is_never_cached_nor_served(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    answers = ["Sure! Here it is:", "Rain.", "Sure! Again:", "Wet."]
    fake_server.script([Reply(content=text) for text in answers])
    endpoint = EndpointConfig(base_url=fake_server.base_url, model="m")
    client = ChatClient(endpoint, RetryConfig(), SecretStr("sk-test"), max_in_flight=1)
    cache = RequestCache(tmp_path / "cache")
    try:
        # an earlier release kept the chatter: without the predicate it is served from the cache
        calls = ModelCalls(client, cache, endpoint)
        answer, cached = await calls.complete(MESSAGES, 1)
        assert (answer.content, cached) == ("Sure! Here it is:", False)
        assert (await calls.complete(MESSAGES, 1))[1] is True

        # with it, that entry is a miss, and the chatter that comes back is not written
        answer, cached = await calls.complete(MESSAGES, 1, keep=_not_chatter)
        assert (answer.content, cached) == ("Rain.", False)
        answer, cached = await calls.complete(MESSAGES, 1, keep=_not_chatter)
        assert (answer.content, cached) == ("Rain.", True)  # a kept answer is served

        other = [{"role": "user", "content": "Summarize: sun all week."}]
        answer, cached = await calls.complete(other, 1, keep=_not_chatter)
        assert (answer.content, cached) == ("Sure! Again:", False)
        assert len(stored(tmp_path / "cache")) == 1  # only "Rain." is kept
        answer, cached = await calls.complete(other, 1, keep=_not_chatter)
        assert (answer.content, cached) == ("Wet.", False)  # asked again: nothing was kept
    finally:
        await client.aclose()
