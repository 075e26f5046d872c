"""The task table: what each task kind means, as data, in one place.

A task kind names a folder of templates (``prompts/<name>/``), the fields its rows provide to
them, and the loop's defaults for it: the cleaner chain, the validators and rewards it gets when
the configuration names none, whether a valid draft ends the item, and which kind of output it
produces (prose or code, which picks the local model's stop sequences). Keeping the field lists
here, next to the templates, lets the engine check a dataset before the first model call instead
of failing on row 9,000. Names of cleaners, validators and rewards are specs resolved by the
registries in :mod:`postprocess`; this module imports none of them.

=========  ===============================  =============================  ===============
task       validators                       rewards                        stop_when_valid
=========  ===============================  =============================  ===============
codegen    python_compiles, + tests_pass    test_pass_rate (rows with      true
           when any row has ``tests``       ``tests``), then
                                            hidden_test_pass_rate (ref.)
summarize  none                             rouge_l (rows with reference)  false
translate  none                             chrf (rows with reference)     false
qa         none                             token_f1, exact_match (ref.)   false
generic    none                             none                           false
=========  ===============================  =============================  ===============
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from refine.errors import ConfigError

__all__ = ["TASK_KINDS", "OutputKind", "TaskKind", "get_task_kind"]

OutputKind = Literal["prose", "code"]
"""What a task's answers are: prose is cut to ``max_output_chars``; code is never truncated."""


@dataclass(frozen=True)
class TaskKind:
    """One kind of task: its input fields and the loop's defaults for it.

    ``fields`` lists every input field in display order; ``optional`` maps the fields a row may
    omit to the default the engine fills in (``None`` means "absent"). ``config_defaults`` maps
    an optional field to the run setting that supplies its default (translate's languages come
    from ``source_lang``/``target_lang``). ``output`` says whether answers are prose or code;
    ``cleaners`` is the post-processing chain used when the configuration names none (prose is
    also cut to ``max_output_chars``: see :meth:`default_cleaners`). ``validators`` always apply
    by default, ``test_validators``/``test_rewards`` only when a row of the dataset has
    ``tests``, ``reference_rewards`` only when a row has a ``reference``; ``secondary_rewards``
    are never a default's first (primary) reward, which steers the loop: codegen's hidden tests
    are scored, never steered by, so without visible tests they are left out of the defaults;
    ``stop_when_valid`` is the default of the stop rule of that name, ``critique`` whether each
    usable draft is critiqued before the next step (Self-Refine) unless the run says.
    """

    name: str
    fields: tuple[str, ...]
    optional: Mapping[str, object] = field(default_factory=dict, hash=False)
    config_defaults: Mapping[str, str] = field(default_factory=dict, hash=False)
    output: OutputKind = "prose"
    cleaners: tuple[str, ...] = ("strip_code_fences", "strip")
    validators: tuple[str, ...] = ()
    test_validators: tuple[str, ...] = ()
    test_rewards: tuple[str, ...] = ()
    reference_rewards: tuple[str, ...] = ()
    secondary_rewards: tuple[str, ...] = ()
    stop_when_valid: bool = False
    critique: bool = False

    def __post_init__(self) -> None:
        unknown = (set(self.optional) | set(self.config_defaults)) - set(self.fields)
        if unknown:
            raise ValueError(f"optional fields {sorted(unknown)} are not in fields {self.fields}")
        object.__setattr__(self, "optional", MappingProxyType(dict(self.optional)))
        object.__setattr__(self, "config_defaults", MappingProxyType(dict(self.config_defaults)))

    @property
    def required(self) -> tuple[str, ...]:
        """The fields every row must carry."""
        return tuple(name for name in self.fields if name not in self.optional)

    @property
    def plain_text(self) -> bool:
        """Whether answers are prose (False for code)."""
        return self.output == "prose"

    def default_cleaners(self, max_chars: int | None = None) -> list[str]:
        """The cleaner specs used when the configuration names none.

        Prose loses a fence wrapped around the whole answer and is cut to ``max_chars`` if given;
        code keeps only the first fenced block, since models surround code with explanations.
        Truncating code would only break it, so ``max_chars`` applies to prose alone.

        Raises:
            ConfigError: ``max_chars`` is below 1.
        """
        specs = list(self.cleaners)
        if max_chars is not None and self.plain_text:
            if max_chars < 1:
                raise ConfigError(f"max_chars must be positive or unset, got {max_chars}")
            specs.append(f"truncate_chars:{max_chars}")
        return specs

    def default_validators(self, has_tests: bool) -> list[str]:
        """The validators a run of this kind gets when it configures none."""
        return [*self.validators, *(self.test_validators if has_tests else ())]

    def default_rewards(self, has_tests: bool, has_references: bool) -> list[str]:
        """The rewards a run of this kind gets when it configures none: those whose data the
        dataset has (a dataset without references is never scored against nothing)."""
        rewards = [
            *(self.test_rewards if has_tests else ()),
            *(self.reference_rewards if has_references else ()),
        ]
        if rewards and rewards[0] in self.secondary_rewards:
            return []  # nothing to steer by: a secondary reward alone would be the primary
        return rewards


_PROSE = ("strip_chatter", "strip_code_fences", "strip_chatter", "strip")
"""The cleaners of answers that are only ever prose: a chat model's lead-in ("Voici la
traduction française : ...") and sign-off go, before the code fence they may wrap (``Sure! Here
is the summary:`` then a fenced answer) and again inside it. Not for ``generic``, whose answers
may be emails that rightly end "Let me know if ..."."""

TASK_KINDS: Mapping[str, TaskKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            TaskKind("generic", ("input",)),
            TaskKind("summarize", ("text",), cleaners=_PROSE, reference_rewards=("rouge_l",)),
            TaskKind(
                "translate",
                ("text", "source_lang", "target_lang"),
                {"source_lang": None, "target_lang": None},
                config_defaults={"source_lang": "source_lang", "target_lang": "target_lang"},
                cleaners=_PROSE,
                reference_rewards=("chrf",),
            ),
            TaskKind(
                "qa",
                ("question", "context"),
                {"context": None},
                cleaners=_PROSE,
                reference_rewards=("token_f1", "exact_match"),
            ),
            TaskKind(
                "codegen",
                ("prompt", "tests"),
                {"tests": None},
                output="code",
                cleaners=("extract_code_block", "strip"),
                validators=("python_compiles",),
                test_validators=("tests_pass",),
                test_rewards=("test_pass_rate",),
                reference_rewards=("hidden_test_pass_rate",),
                secondary_rewards=("hidden_test_pass_rate",),  # hidden tests: never primary
                stop_when_valid=True,
            ),
        )
    }
)
"""Every task kind by name: the one table of what a task kind means (see the module doc)."""


def get_task_kind(name: str) -> TaskKind:
    """Look up a task kind by name; a typo fails here with the list of valid names."""
    try:
        return TASK_KINDS[name]
    except KeyError:
        valid = ", ".join(sorted(TASK_KINDS))
        raise ConfigError(f"unknown task kind {name!r}; valid task kinds: {valid}") from None
