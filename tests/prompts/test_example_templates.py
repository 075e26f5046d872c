"""The template variant in examples/templates/terse renders for every example dataset it
covers, and its instruction is what the model receives (examples/README.md compares it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config.run import RunConfig
from flows.data.dataset import read_items
from flows.data.records import Draft
from flows.loop.render import StepRenderer

REPO = Path(__file__).resolve().parents[2]
TERSE = REPO / "examples" / "templates" / "terse"
MARKERS = {
    "summarize": ("in one sentence", "better one-sentence summary"),
    "translate": ("keeping every fact and number", None),
    "qa": ("as few words as possible", None),
}


@pytest.mark.parametrize("task", sorted(MARKERS))
def test_terse_variant_renders_for_every_row_of_its_example(task: str) -> None:
    config = RunConfig(task=task, template_dirs=[TERSE])
    renderer = StepRenderer.for_config(config)
    first, refine = MARKERS[task]
    items = read_items(REPO / "examples" / f"{task}.jsonl")
    assert items
    for item in items:
        fields = renderer.fields(item)
        step_1 = renderer.messages(fields, [], 1)
        assert first in step_1[-1]["content"]
        if refine is not None:
            drafts = [Draft(step=1, text="An earlier draft.")]
            step_2 = renderer.messages(fields, drafts, 2)
            assert refine in step_2[-1]["content"] and "An earlier draft." in step_2[-1]["content"]
