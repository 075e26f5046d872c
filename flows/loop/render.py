"""The one place that turns (item, drafts, step, role) into the messages a request sends.

The refiner, the dry run (``refine templates render``), the pre-flight check and ``refine
export`` all render through :class:`StepRenderer`, so what a step sends, what a dry run shows
and what an SFT line's prompt holds cannot drift apart. Rendering itself happens in
:mod:`prompts` (sandboxed Jinja, the variable contract); this module decides *which* variables a
step sees: the row's fields with the task's defaults filled in, and only the last k drafts and
their problem lists, so prompts do not grow with T.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flows.config.run import RunConfig
from flows.data.records import Draft, Item
from prompts import (
    ENGINE_VARIABLES,
    ROLES,
    TaskKind,
    TemplateEnvironment,
    build_environment,
    build_variables,
    get_task_kind,
    load_examples,
    packaged_examples,
)
from prompts.values import visible_text
from refine.errors import ConfigError

__all__ = [
    "Messages",
    "StepRenderer",
    "examples_for",
    "fill_fields",
    "input_fields",
    "step_variables",
    "template_environment",
]

Messages = list[dict[str, str]]
"""Chat messages as the endpoint receives them: ``[{"role": ..., "content": ...}, ...]``."""


def input_fields(item: Item, kind: TaskKind, config: RunConfig) -> dict[str, Any]:
    """The row's fields with the task's optional fields and configured defaults filled in.

    A null or empty value counts as absent for a field that has a default (an empty CSV cell
    must not turn "into French" into "into ").
    """
    return fill_fields(item.fields, kind, config)


def fill_fields(raw: Mapping[str, Any], kind: TaskKind, config: RunConfig) -> dict[str, Any]:
    """``raw`` (a row's or a demo's fields) with the task's defaults filled in: see
    :func:`input_fields`."""
    defaults: dict[str, Any] = dict(kind.optional)
    defaults.update({name: getattr(config, key) for name, key in kind.config_defaults.items()})
    fields = dict(defaults)
    fields.update({k: v for k, v in raw.items() if k not in defaults or not _absent(v)})
    return fields


def _absent(value: Any) -> bool:
    """Whether an optional field's value stands for "not given", so its default applies: null,
    NaN, or text that is empty or only whitespace and invisible characters such as U+200B (a
    required field holding one of these is a problem of its row, and an optional one holding a
    value of the wrong kind, ``false`` for a language, too: see :mod:`flows.loop.preflight`)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not visible_text(value)


def step_variables(
    config: RunConfig,
    fields: dict[str, Any],
    drafts: Sequence[Draft],
    examples: list[dict[str, Any]],
    step: int,
) -> dict[str, object]:
    """The template variables for ``step``: only the last k drafts and their problem lists, so
    prompts don't grow with T; the latest draft's critique is the ``feedback``."""
    recent = list(drafts)[-config.history :]
    return build_variables(
        config.task,
        step,
        config.steps,
        fields,
        examples=examples,
        drafts=[d.text for d in recent],
        errors=recent[-1].problems if recent else (),
        problems=[d.problems for d in recent],
        feedback=recent[-1].critique if recent else None,
        stop_phrase=config.critique.stop_phrase,
    )


@dataclass(frozen=True)
class StepRenderer:
    """Renders a run's requests: built once per run from its config (task defaults applied).

    ``kind`` is the task kind, ``env`` the template environment (user folders first, then the
    packaged templates), ``examples`` the few-shot demos every step shows: as earlier
    user/assistant turns after the system message (:attr:`demo_turns`), unless the task's
    templates read ``examples`` and place them themselves.
    """

    config: RunConfig
    kind: TaskKind
    env: TemplateEnvironment
    examples: list[dict[str, Any]]

    @classmethod
    def for_config(cls, config: RunConfig) -> StepRenderer:
        """The renderer of ``config``: its task kind, a fresh template environment and its demos.

        Raises:
            ConfigError: an unknown task kind. InputError: a bad demo file.
        """
        kind = get_task_kind(config.task)
        return cls(config, kind, template_environment(config), examples_for(config, kind))

    def fields(self, item: Item) -> dict[str, Any]:
        """What templates see of ``item``: see :func:`input_fields`."""
        return input_fields(item, self.kind, self.config)

    def messages(
        self,
        fields: dict[str, Any],
        drafts: Sequence[Draft],
        step: int,
        role: str | None = None,
    ) -> Messages:
        """The messages of ``step`` given the drafts so far.

        ``role`` is None for the step's own template (``initial`` at step 1, else ``refine``),
        or ``fix``, ``critique`` or ``judge``.

        Raises:
            TemplateError: a template is missing, breaks the sandbox or renders past the cap.
        """
        variables = step_variables(self.config, fields, drafts, self.examples, step)
        return self.env.render_messages(
            self.kind.name, step, variables, role=role, demos=self.demo_turns
        )

    @cached_property
    def demo_turns(self) -> Messages:
        """The few-shot demos as chat turns, rendered once per run: for each demo, the
        ``initial`` request for its input as a user turn and its ``output`` as the assistant's.

        None when the task's templates read ``examples`` (a user template that pastes the demos
        itself keeps doing so, and they are not sent twice), and none when the templates use a
        row field the task's packaged demos lack (a user template asking for ``audience``):
        the user did not choose those demos, so they are left out rather than failing the run.

        Raises:
            ConfigError: a demo of the user's own ``examples_path`` lacks a field the templates
                use (the file and the field named). TemplateError: the ``initial`` template
                fails on a demo's fields.
        """
        used = self.env.variables_used(self.kind.name, (*ROLES, "fix"))
        if not self.examples or "examples" in used:
            return []
        fields_used = used - ENGINE_VARIABLES - set(self.kind.optional)
        for number, example in enumerate(self.examples, 1):
            if missing := sorted(fields_used - set(example)):
                if self.config.examples_path is None:  # the packaged demos: leave them out
                    return []
                raise ConfigError(
                    f"{self.config.examples_path}: demo {number} lacks {', '.join(missing)}, "
                    "which the templates use; add it to every demo"
                )
        demos = []
        for example in self.examples:
            raw = {k: v for k, v in example.items() if k != "output"}
            fields = fill_fields(raw, self.kind, self.config)
            variables = step_variables(self.config, fields, [], [], 1)
            demos.append((variables, str(example["output"])))
        return self.env.render_demos(self.kind.name, demos)

    def placeholder(self, item: Item, step: int, role: str | None = None) -> Messages:
        """The messages ``step`` would send for ``item``, earlier drafts shown as placeholders.

        What the dry run prints and the pre-flight check renders once. ``role`` renders the
        ``fix`` (the latest draft with a placeholder problem), ``critique`` or ``judge``
        template instead of the step's own.
        """
        shown = step if role in ("critique", "judge") else step - 1
        drafts = [Draft(step=t, text=f"[draft of step {t}]") for t in range(1, shown + 1)]
        if role == "fix" and drafts:
            drafts[-1].problems.append(f"[problems found in the draft of step {drafts[-1].step}]")
        return self.messages(self.fields(item), drafts, step, role)


def template_environment(config: RunConfig) -> TemplateEnvironment:
    """A fresh template environment: the user folders first, then the packaged templates."""
    return build_environment(config.template_dirs, max_output_chars=config.max_prompt_chars)


def examples_for(config: RunConfig, kind: TaskKind) -> list[dict[str, Any]]:
    """The few-shot demos: the configured file, else the task's packaged ones, else none.

    Each demo must carry the task's required input fields and ``output``.
    """
    path = config.examples_path or packaged_examples(kind.name)
    return load_examples(path, required=kind.required) if path else []
