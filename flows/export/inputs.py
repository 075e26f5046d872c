"""What ``refine export`` reads: a run's output records, the dataset, and step-1 prompts.

Records are read one line at a time, so memory holds one record, never the file. The dataset
supplies what records leave out: the input ``x`` and the reference. The prompt of an SFT or
preference line is rendered the way ``refine run`` renders step 1 (same config layers, task
defaults, templates and few-shot demos), from x alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.data.records import Item
from flows.export.formats import ChatMessage
from refine.errors import FieldProblem, InputError, RefineError, TemplateError

__all__ = ["StepOnePrompts", "read_dataset"]


def read_dataset(path: Path) -> tuple[dict[str, Item], list[FieldProblem]]:
    """The dataset's good rows by id, and its bad rows' problems.

    Bad rows are not fatal: a run with ``--skip-invalid`` left them out, so they have no
    records; a record whose id is not among the good rows is caught by the caller.
    """
    from flows.data.dataset import read_rows

    items, problems = read_rows(path)
    if not items:
        raise InputError(path, problems or [FieldProblem(0, None, "the file has no rows")])
    return {item.id: item for item in items}, problems


class StepOnePrompts:
    """Renders the system and user messages step 1 of ``refine run`` sends for an item."""

    def __init__(
        self,
        dataset: Path,
        items: list[Item],
        config_file: Path | None,
        overrides: dict[str, Any],
    ) -> None:
        """Build the run's config exactly as ``refine run`` does (flags over file over
        environment), with the task defaults the same dataset gives it."""
        from flows.config.run import build_run_config
        from flows.loop.defaults import with_task_defaults
        from flows.loop.render import StepRenderer

        self.dataset = dataset
        config = with_task_defaults(build_run_config(overrides, config_file), items)
        self.renderer = StepRenderer.for_config(config)

    def __call__(self, item: Item) -> list[ChatMessage]:
        """The step-1 messages for ``item`` (step 1 never renders the fix template)."""
        try:
            messages = self.renderer.messages(self.renderer.fields(item), [], 1)
        except RefineError as exc:
            raise TemplateError(
                f"{self.dataset}: line {item.line}, item {item.id!r}: step-1 prompt: {exc}"
            ) from None
        return [ChatMessage.model_validate(message) for message in messages]
