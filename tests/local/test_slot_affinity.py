"""Routing by prompt prefix: an item's next step goes to the slot that served its last one.

Over real sockets (backends on Unix sockets, the dispatcher on loopback) for where requests
land, and on the pool itself for the waiting-queue rules (who jumps the queue, and how often).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flows.local.dispatcher import SlotPool, prompt_text
from flows.local.prefix_index import PrefixIndex
from tests.local.test_slot_dispatcher import behind_dispatcher

ARTICLE = {name: f"{name} " + "a long article that every step of this item repeats. " * 12
           for name in ("A", "B", "X")}  # fmt: skip


def _messages(item: str, step: int) -> list[dict[str, str]]:
    """A step's prompt: the shared system text and the item's article first, the step last."""
    tail = "Summarize the text above." if step == 1 else f"Improve draft {step - 1}."
    return [
        {"role": "system", "content": "You write summaries."},
        {"role": "user", "content": f"<text>{ARTICLE[item]}</text>\n{tail}"},
    ]


class Slot:
    """A fake model slot that answers after ``delay_s`` and logs which prompts it served."""

    def __init__(self, name: str, delay_s: float) -> None:
        self.name, self.delay_s = name, delay_s
        self.served: list[str] = []

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.json()
            await asyncio.sleep(self.delay_s)
            self.served.append(body["label"])
            return JSONResponse({"slot": self.name})

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(params=[True, False], ids=["affinity", "arrival-order"])
def routed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[Slot]]]:
    """Slot a (2 s) and slot b (5 s) behind a dispatcher with affinity on or off."""
    slots = [Slot("a", 2.0), Slot("b", 5.0)]
    apps = [(s.name, s.app()) for s in slots]
    with behind_dispatcher(apps, tmp_path, affinity=request.param) as url:
        yield url, slots


def _send(url: str, item: str, step: int) -> str:
    body = {"model": "m", "messages": _messages(item, step), "label": f"{item}{step}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        return str(client.post("/v1/chat/completions", json=body).json()["slot"])


def test_a_free_slot_holding_the_items_prefix_is_chosen(routed: tuple[str, list[Slot]]) -> None:
    url, slots = routed
    affinity = httpx.get(f"{url}/health").json()["affinity"]
    landed = {f"{item}{step}": _send(url, item, step) for item, step in
              [("A", 1), ("B", 1), ("B", 2), ("A", 2)]}  # fmt: skip
    assert landed["A1"] == "a" and landed["B1"] == "b"  # both free: in the order they freed
    if affinity:
        assert landed["B2"] == "b" and landed["A2"] == "a"
        health = httpx.get(f"{url}/health").json()
        assert health["requests"] == 4 and health["affinity_hits"] == 2
    else:  # arrival order: the slot free longest, whatever it holds
        assert landed["B2"] == "a" and landed["A2"] == "b"


def test_a_freed_slot_goes_to_the_waiter_it_holds_most_of(routed: tuple[str, list[Slot]]) -> None:
    url, slots = routed
    affinity = httpx.get(f"{url}/health").json()["affinity"]
    order = [("A", 1), ("B", 1), ("X", 1), ("A", 2)]  # X and A2 wait; a frees first
    threads = []
    for sent, (item, step) in enumerate(order, 1):
        thread = threading.Thread(target=_send, args=(url, item, step))
        thread.start()
        threads.append(thread)
        _wait_until_seen(url, sent)  # arrive in this order, however busy the machine
    for thread in threads:
        thread.join()
    a = slots[0].served
    assert a[0] == "A1"
    if affinity:  # A2 jumps X: slot a holds A's article
        assert a[1:] == ["A2", "X1"]
    else:
        assert a[1:] == ["X1", "A2"]


def _wait_until_seen(url: str, sent: int) -> None:
    """Until the dispatcher holds ``sent`` requests, given a slot or waiting for one."""
    for _ in range(400):
        health = httpx.get(f"{url}/health").json()
        if health["requests"] + health["waiting"] >= sent:
            return
        threading.Event().wait(0.025)
    raise AssertionError(f"the dispatcher never saw request {sent}")


def test_the_oldest_waiter_is_passed_over_at_most_once_per_slot(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        pool = SlotPool([tmp_path / "only.sock"], affinity=True)  # no request is sent
        await pool.open()
        text = {label: prompt_text(_body(label)) for label in ("A1", "X1", "A2", "A3", "A4")}
        first = await pool.acquire(text["A1"])
        served: list[str] = []

        async def wait(label: str) -> None:
            client = await pool.acquire(text[label])
            served.append(label)
            await asyncio.sleep(0)
            pool.release(client)

        waiting = [asyncio.create_task(wait(label)) for label in ("X1", "A2", "A3", "A4")]
        await asyncio.sleep(0.01)  # all four are queued, in this order
        pool.release(first)
        await asyncio.gather(*waiting)
        await pool.close()
        return served

    # one slot: X1 may be passed over once (by A2), then it is served, however well A3 fits
    assert asyncio.run(scenario()) == ["A2", "X1", "A3", "A4"]


def test_a_waiter_cancelled_after_it_was_given_a_slot_gives_it_back(tmp_path: Path) -> None:
    async def scenario() -> int:
        pool = SlotPool([tmp_path / "only.sock"], affinity=True)
        await pool.open()
        held = await pool.acquire("p")
        waiter = asyncio.create_task(pool.acquire("p"))
        await asyncio.sleep(0.01)
        pool.release(held)  # the slot is handed to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        again = await asyncio.wait_for(pool.acquire("q"), timeout=1)  # not leaked
        pool.release(again)
        await pool.close()
        return pool.requests

    assert asyncio.run(scenario()) == 2


def _body(label: str) -> bytes:
    import json

    return json.dumps({"messages": _messages(label[0], int(label[1]))}).encode()


def test_prefix_blocks_name_the_whole_prefix() -> None:
    index = PrefixIndex(slots=2, block_chars=4, capacity_blocks=3)
    assert index.blocks("abcdefghij") == index.blocks("abcdefghXY")  # 2 whole blocks alike
    assert index.blocks("abcdefgh")[1] != index.blocks("zzzzefgh")[1]  # same block, other past
    index.record(0, index.blocks("abcdefghijkl"))
    assert index.held(0, index.blocks("abcdefghzzzz")) == 2
    assert index.held(1, index.blocks("abcdefghzzzz")) == 0
    index.record(0, index.blocks("mnop"))  # capacity 3: the oldest block name is dropped
    assert index.held(0, index.blocks("abcdefgh")) == 0


def test_prompt_text_reads_chat_and_completion_bodies() -> None:
    chat = prompt_text(b'{"messages": [{"role": "user", "content": "hi"}]}')
    assert chat is not None and "hi" in chat
    assert prompt_text(b'{"prompt": "once upon"}') == "once upon"
    assert prompt_text(b"not json") is None
    assert prompt_text(b'{"input": 3}') is None
