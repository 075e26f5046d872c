"""Every packaged template puts what stays first and what changes last (issue 17).

A server re-uses the computed prompt prefix it shares with an earlier request (llama.cpp's prompt
cache, vLLM's automatic prefix caching), so the order of a prompt decides what a step costs:
the system prompt and the demos (the same for every item), then the item's input (the same for
every step of the item), then the drafts, problems and feedback (new at each step).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flows.config.run import RunConfig
from flows.data.records import Draft, Item
from flows.loop.defaults import with_task_defaults
from flows.loop.render import StepRenderer
from prompts import TASK_KINDS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LATER = [(2, None), (3, None), (3, "fix"), (2, "critique"), (2, "judge")]


def _items(task: str) -> list[Item]:
    rows = [json.loads(line) for line in (EXAMPLES / f"{task}.jsonl").read_text().splitlines()]
    fields = [{k: v for k, v in row.items() if k not in ("id", "reference")} for row in rows[:3]]
    return [Item(id=str(i), line=i, fields=f) for i, f in enumerate(fields, 1)]


def _drafts() -> list[Draft]:
    return [
        Draft(step=1, text="DRAFT-ONE"),
        Draft(step=2, text="DRAFT-TWO", problems=["PROBLEM-TWO"], feedback="FEEDBACK-TWO"),
    ]


def _render(renderer: StepRenderer, item: Item, step: int, role: str | None) -> list[dict]:
    drafts = _drafts()[: step - 1 if role not in ("critique", "judge") else step]
    return renderer.messages(renderer.fields(item), drafts, step, role)


@pytest.mark.parametrize("task", sorted(TASK_KINDS))
def test_input_comes_before_drafts_and_problems_at_every_step(task: str) -> None:
    renderer = StepRenderer.for_config(with_task_defaults(RunConfig(task=task, steps=3), []))
    for item in _items(task):
        first = _render(renderer, item, 1, None)[-1]["content"]
        values = [str(v) for v in renderer.fields(item).values() if str(v).strip()]
        for step, role in LATER:
            later = _render(renderer, item, step, role)[-1]["content"]
            shared = os.path.commonprefix([first, later])
            for value in values:  # the whole input is in the prefix shared with step 1
                assert value.strip() in shared, (task, step, role, value[:40])
            for changing in ("DRAFT-ONE", "DRAFT-TWO", "PROBLEM-TWO", "FEEDBACK-TWO"):
                if changing in later:  # what changes comes after all of the input
                    assert later.index(changing) >= len(shared), (task, step, role, changing)


@pytest.mark.parametrize("task", sorted(TASK_KINDS))
def test_system_prompt_and_demos_are_the_same_for_every_item_and_step(task: str) -> None:
    renderer = StepRenderer.for_config(with_task_defaults(RunConfig(task=task, steps=3), []))
    heads = {
        json.dumps(_render(renderer, item, step, role)[:-1])
        for item in _items(task)
        for step, role in [(1, None), (2, None), (3, "fix")]
    }
    assert len(heads) == 1, task
