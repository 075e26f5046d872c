"""The slot's prompt cache with the real default model: what it keeps, what it counts, and that
an answer started from a saved state is the answer computed from scratch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.local.test_local_model import _require_extra

pytestmark = pytest.mark.local_model

ARTICLE = (
    "At its Thursday meeting the Eastbrook town council agreed, by six votes to three, to turn "
    "the empty bus depot on Mill Lane into a library branch. The conversion is expected to cost "
    "1.4 million, of which a regional culture grant will cover about half. "
) * 3


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    _require_extra()
    from llama_cpp import Llama

    from flows.config.local import LocalModelConfig
    from flows.local.backend import disable_weight_repacking
    from flows.local.model import resolve_model

    disable_weight_repacking()
    path = resolve_model(LocalModelConfig()).path
    llm = Llama(str(path), n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
    yield llm
    llm.close()


def _ask(llm: Any, tail: str) -> tuple[str, dict[str, int]]:
    messages = [
        {"role": "system", "content": "You summarize."},
        {"role": "user", "content": f"<text>{ARTICLE}</text>\n{tail}"},
    ]
    answer = llm.create_chat_completion(messages=messages, max_tokens=12, temperature=0, seed=0)
    return answer["choices"][0]["message"]["content"], answer["usage"]


def test_saved_states_keep_one_row_of_logits_and_count_it(model: Any) -> None:
    from flows.local.prompt_cache import CompactPromptCache

    cache = CompactPromptCache(capacity_bytes=64 << 20)
    model.set_cache(cache)
    try:
        _ask(model, "Summarize the text above.")
        states = list(cache.cache_state.values())
        assert len(states) == 1
        assert states[0].scores.shape == (1, model.n_vocab())  # not n_batch rows: 311 MB
        held = states[0].llama_state_size + states[0].scores.nbytes + states[0].input_ids.nbytes
        assert cache.cache_size == held < 64 << 20
        small = CompactPromptCache(capacity_bytes=held + 1)  # room for one state only
        model.set_cache(small)
        _ask(model, "Summarize it in one sentence.")
        _ask(model, "Name the town.")
        assert len(small.cache_state) == 1 and small.cache_size <= held + 1 + (1 << 20)
    finally:
        model.set_cache(None)


def test_an_answer_started_from_a_saved_state_is_the_answer_from_scratch(model: Any) -> None:
    from flows.local.prompt_cache import CompactPromptCache

    questions = ("Which building becomes the library?", "How did the council vote?")
    model.set_cache(None)
    fresh = []
    for question in questions:
        model.reset()
        fresh.append(_ask(model, question)[0])
    cache = CompactPromptCache(capacity_bytes=256 << 20)
    model.set_cache(cache)
    try:
        _ask(model, questions[0])  # saved: system, article, question and answer
        other = [{"role": "user", "content": "Translate into French: good morning."}]
        model.create_chat_completion(messages=other, max_tokens=4, temperature=0)
        loads = 0
        original = model.load_state

        def counted(state: Any) -> None:
            nonlocal loads
            loads += 1
            original(state)

        model.load_state = counted
        again = _ask(model, questions[0])[0]  # the whole prompt from the saved state
        model.reset()
        other_question = _ask(model, questions[1])[0]  # its prefix (the article) from it
    finally:
        model.set_cache(None)
        del model.load_state
    assert loads == 2  # both answers started from a saved state, not from the context
    assert [again, other_question] == fresh
