"""The variable contract between the engine and every template.

Every role template (``system.j2``, ``initial.j2``, ``refine.j2``, ``fix.j2``, ``critique.j2``,
``judge.j2``) of every task receives the same variables, whatever the step, so a template can be
moved between roles without surprises. In ``critique.j2`` and ``judge.j2`` the draft to judge is
the latest one (``draft``):

``task`` (str)
    The task kind, e.g. ``"summarize"``.
``step`` (int)
    The current step, 1-based. Step 1 renders ``initial.j2``, later steps ``refine.j2``.
``max_steps`` (int)
    The most steps this run takes (T).
``x`` (dict)
    The row's input fields, never containing ``id`` or ``reference``: references exist for
    rewards and never reach a prompt. Optional fields are present with their default (None
    when absent; translate's ``source_lang``/``target_lang`` get the configured languages).
*each input field*
    Also a top-level variable, e.g. ``text`` for summarize. Input fields by task kind: generic
    ``input``; summarize ``text``; translate ``text``, ``source_lang``, ``target_lang``; qa
    ``question``, ``context``; codegen ``prompt``, ``tests``.
``examples`` (list[dict])
    Few-shot demonstrations: each holds the task's input fields plus ``output``. Empty unless
    the task ships demos (summarize, qa) or the user names a JSONL file. The engine sends them
    as earlier chat turns (the ``initial`` request for each demo's input, then its ``output``
    as the assistant's answer), so the packaged templates never paste them; a user template
    that reads ``examples`` places them itself, and then they are not sent as turns.
``drafts`` (list[str])
    The last k drafts, oldest first. Empty at step 1.
``draft`` (str)
    The latest draft (``drafts[-1]``). ``""`` at step 1.
``feedback`` (str | None)
    The critique of the latest draft when critique is enabled, else None.
``errors`` (list[str])
    Problems found in the latest draft (empty answer, cut off, a filter's rejection, each
    validator's problems); may be empty. Empty at step 1. A non-empty list makes the step a
    ``fix`` step.
``problems`` (list[list[str]])
    The problem list of each draft in ``drafts``, in the same order: only the last k lists are
    kept, like the drafts, so prompts don't grow with T.
``stop_phrase`` (str)
    The phrase a critique answers with when the draft needs no change (``critique.stop_phrase``,
    default ``NO ISSUES``); ``critique.j2`` asks for it.

Keep what does not change between steps (system prompt, examples, ``x``) at the start of the
prompt and the drafts after it, so engines with prefix caching reuse the prefix across steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from refine.errors import ConfigError

__all__ = ["ENGINE_VARIABLES", "HIDDEN_FIELDS", "build_variables"]

ENGINE_VARIABLES: frozenset[str] = frozenset(
    {
        "task",
        "step",
        "max_steps",
        "x",
        "examples",
        "drafts",
        "draft",
        "feedback",
        "errors",
        "problems",
        "stop_phrase",
    }
)
"""The names the engine provides to every template, besides the row's input fields."""

HIDDEN_FIELDS: frozenset[str] = frozenset({"id", "reference"})
"""Row fields that never reach a template: the id is bookkeeping, the reference is for rewards."""


def build_variables(
    task: str,
    step: int,
    max_steps: int,
    fields: Mapping[str, object],
    *,
    examples: Sequence[Mapping[str, object]] = (),
    drafts: Sequence[str] = (),
    feedback: str | None = None,
    errors: Sequence[str] = (),
    problems: Sequence[Sequence[str]] = (),
    stop_phrase: str = "NO ISSUES",
) -> dict[str, object]:
    """Assemble the variables of one step, keeping the contract above in one place.

    ``fields`` is the row with optional defaults filled in; ``id`` and ``reference`` are dropped.
    A field named like an engine variable would be shadowed silently, so it is refused.
    """
    if not 1 <= step <= max_steps:
        raise ValueError(f"step must be between 1 and max_steps={max_steps}, got {step}")
    x = {name: value for name, value in fields.items() if name not in HIDDEN_FIELDS}
    clashes = sorted(set(x) & ENGINE_VARIABLES)
    if clashes:
        raise ConfigError(
            f"input field(s) {clashes} clash with engine variables of the same name; "
            "rename them in the dataset"
        )
    return {
        **x,
        "task": task,
        "step": step,
        "max_steps": max_steps,
        "x": x,
        "examples": [dict(example) for example in examples],
        "drafts": list(drafts),
        "draft": drafts[-1] if drafts else "",
        "feedback": feedback,
        "errors": list(errors),
        "problems": [list(found) for found in problems],
        "stop_phrase": stop_phrase,
    }
