"""Configuration of the refinement loop: validators, rewards, critique, stop rules, selection.

These models sit in :class:`~flows.config.run.RunConfig` (one run is one task). Specs are kept
as written (a name, ``"package.module:function"`` or a table with ``name``); they are resolved
against the registries before any request (see :mod:`flows.loop.plan`), because what they
resolve to (the sandbox, the judge's client) only exists once a run starts. ``None`` for
``validators``, ``rewards`` or ``stop.stop_when_valid`` means "the task's default", set in one
place: :mod:`flows.loop.defaults`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from postprocess.sandbox.run import SandboxLimits

__all__ = [
    "MAX_SAMPLES",
    "CritiqueConfig",
    "LoopFields",
    "SandboxConfig",
    "Selection",
    "Spec",
    "StopConfig",
    "parse_samples",
]

Spec = str | dict[str, Any]
"""A cleaner, validator or reward as configured, in the grammar of :mod:`postprocess.specs`:
``"rouge_l"``, ``"truncate_chars:500"``, ``"pkg.mod:fn"`` or ``{name = ..., ...}``."""

MAX_SAMPLES = 64
"""The most candidates one step may draw."""

Selection = Literal["last", "best"]
"""``last`` usable draft, or the ``best`` one by the primary reward (ties to the later step)."""


def parse_samples(text: str | None) -> int | list[int] | None:
    """``--samples``: ``"3"`` is 3, ``"4,1,1"`` is ``[4, 1, 1]``, None stays None.

    Raises:
        ValueError: a part is not a whole number (the range is checked by the config).
    """
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        counts = [int(part) for part in parts]
    except ValueError:
        raise ValueError(
            f"{text!r} is not a count or a comma-separated list of counts (3, or 4,1,1)"
        ) from None
    return counts[0] if len(counts) == 1 else counts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CritiqueConfig(_Strict):
    """Self-Refine: after each usable draft the model critiques it with ``<task>/critique.j2``.

    The critique reaches the next step as ``feedback``. A critique containing ``stop_phrase``
    (case-insensitive) ends the item with ``stop_reason: critic_satisfied``.
    """

    enabled: bool | None = Field(
        default=None, description="critique each usable draft; None = the task kind's default"
    )
    stop_phrase: str = Field(default="NO ISSUES", min_length=1)


class StopConfig(_Strict):
    """Stop rules, all combinable; the item stops at the first step where one holds.

    ``max_steps`` (the run's ``steps``) always applies.
    """

    reward_threshold: float | None = Field(
        default=None, description="stop once a usable draft's primary reward reaches this"
    )
    plateau_steps: int | None = Field(
        default=None, ge=1, description="stop when the primary reward has not improved for p steps"
    )
    stop_when_unchanged: bool = Field(
        default=True, description="stop when a step returns the previous usable draft unchanged"
    )
    stop_when_valid: bool | None = Field(
        default=None, description="stop once a draft passes every validator; None = task default"
    )
    repeat_temperature: float | None = Field(
        default=0.7,
        ge=0,
        le=2,
        description="a fix step whose answer repeats a draft already found wrong asks once "
        "more, a fresh answer to the initial request at this temperature; None = no second "
        "sample. A repeat still left ends the item with stop_reason 'stuck'",
    )
    max_tokens_per_item: int | None = Field(default=None, gt=0)
    max_tokens_per_run: int | None = Field(default=None, gt=0)


class SandboxConfig(_Strict):
    """Where generated code runs (the ``tests_pass`` validator, the ``test_pass_rate`` reward).

    Limits are per run of a draft's code and tests; see :class:`postprocess.sandbox.SandboxLimits`.
    """

    allow_unsandboxed: bool = Field(
        default=False,
        description="where bubblewrap cannot run, run code with rlimits only (loudly); unsafe",
    )
    cpu_seconds: int = Field(default=10, gt=0)
    memory_mb: int = Field(default=1024, gt=0)
    max_processes: int = Field(default=16, gt=0)
    wall_seconds: float = Field(default=20.0, gt=0)
    concurrency: int | None = Field(
        default=None, ge=1, description="sandbox runs at once; None = the number of CPU cores"
    )

    def limits(self) -> SandboxLimits:
        """The limits each sandbox run gets."""
        return SandboxLimits(
            cpu_seconds=self.cpu_seconds,
            memory_bytes=self.memory_mb << 20,
            max_processes=self.max_processes,
            wall_seconds=self.wall_seconds,
        )


class LoopFields(_Strict):
    """The loop's fields of RunConfig, kept here so settings.py stays about the run itself."""

    validators: list[Spec] | None = Field(
        default=None, description="validator specs; None = the task's default"
    )
    rewards: list[Spec] | None = Field(
        default=None, description="reward specs, the first is primary; None = the task's default"
    )
    critique: CritiqueConfig = Field(default_factory=CritiqueConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    select: Selection = "last"
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    samples: int | list[int] = Field(
        default=1,
        description="best-of-N: candidates each step draws (a list sets it per step, its last "
        "entry for the steps after it); the step's draft is the best candidate",
    )
    stop_sampling_when_valid: bool = Field(
        default=False,
        description="draw a step's candidates one at a time and stop at the first that passes "
        "every validator (with visible tests: test-filtered sampling)",
    )

    @field_validator("samples")
    @classmethod
    def _positive(cls, value: int | list[int]) -> int | list[int]:
        counts = value if isinstance(value, list) else [value]
        if not counts:
            raise ValueError("give at least one count, e.g. samples = [4, 1, 1]")
        for count in counts:
            if isinstance(count, bool) or count < 1 or count > MAX_SAMPLES:
                raise ValueError(
                    f"each count is a whole number from 1 to {MAX_SAMPLES}, got {count}"
                )
        return value

    def samples_at(self, step: int) -> int:
        """Candidates step ``step`` (from 1) draws: ``samples``, or its entry for the step (the
        last entry for steps past the list)."""
        if isinstance(self.samples, int):
            return self.samples
        return self.samples[min(step, len(self.samples)) - 1]

    def most_samples(self) -> int:
        """The largest count of candidates any step draws."""
        return self.samples if isinstance(self.samples, int) else max(self.samples)

    @field_validator("validators", "rewards")
    @classmethod
    def _named(cls, value: list[Spec] | None) -> list[Spec] | None:
        """Each spec has a name; what the name means is checked at pre-flight, with the rows."""
        for spec in value or []:
            name = spec.get("name") if isinstance(spec, dict) else spec
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"each entry is a name or a table with a 'name' key, got {spec!r}")
        return value
