"""The task kinds: which input fields each kind of row carries and how its output is cleaned.

A task kind names a folder of templates (``prompts/<name>/``) and the fields its rows provide to
them. Keeping the field lists here, next to the templates, lets the engine check a dataset before
the first model call instead of failing on row 9,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from refine.errors import ConfigError

__all__ = ["TASK_KINDS", "TaskKind", "get_task_kind"]


@dataclass(frozen=True)
class TaskKind:
    """One kind of task: its input fields, their defaults, and whether its output is prose.

    ``fields`` lists every input field in display order; ``optional`` maps the fields a row may
    omit to the default the engine fills in (``None`` means "absent"; for translate's languages
    the engine replaces ``None`` with the configured default). ``plain_text`` is False for code,
    whose answers are cleaned by extracting a code block instead of stripping fences.
    """

    name: str
    fields: tuple[str, ...]
    optional: Mapping[str, object] = field(default_factory=dict, hash=False)
    plain_text: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.optional) - set(self.fields)
        if unknown:
            raise ValueError(f"optional fields {sorted(unknown)} are not in fields {self.fields}")
        object.__setattr__(self, "optional", MappingProxyType(dict(self.optional)))

    @property
    def required(self) -> tuple[str, ...]:
        """The fields every row must carry."""
        return tuple(name for name in self.fields if name not in self.optional)


TASK_KINDS: Mapping[str, TaskKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            TaskKind("generic", ("input",)),
            TaskKind("summarize", ("text",)),
            TaskKind(
                "translate",
                ("text", "source_lang", "target_lang"),
                {"source_lang": None, "target_lang": None},
            ),
            TaskKind("qa", ("question", "context"), {"context": None}),
            TaskKind("codegen", ("prompt", "tests"), {"tests": None}, plain_text=False),
        )
    }
)


def get_task_kind(name: str) -> TaskKind:
    """Look up a task kind by name; a typo fails here with the list of valid names."""
    try:
        return TASK_KINDS[name]
    except KeyError:
        valid = ", ".join(sorted(TASK_KINDS))
        raise ConfigError(f"unknown task kind {name!r}; valid task kinds: {valid}") from None
