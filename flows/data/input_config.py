"""The ``[input]`` table: which rows of a dataset a run takes, and how its columns feed the
templates. It lives with the data it chooses from (the readers below the settings use it);
:class:`flows.config.run.RunConfig` holds it as ``input``.

``map`` names, for a template variable (or ``id`` / ``reference``), the dataset column that
holds it, so a dataset's own column names need no renaming (``text = "article"``). ``limit``
takes the first N rows, ``sample`` a seeded random N: both for trying a few rows before the
whole. ``split`` and ``subset`` choose within a Hugging Face dataset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["InputConfig", "chosen_from", "parse_map"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InputConfig(BaseModel):
    """The ``[input]`` table (and ``--map``, ``--limit``, ``--sample``, ``--seed``,
    ``--split``, ``--subset``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    map: dict[str, str] = Field(
        default_factory=dict,
        description="template variable (or id, reference) -> the dataset column holding it",
    )
    limit: int | None = Field(default=None, ge=1, description="take only the first N rows")
    sample: int | None = Field(
        default=None, ge=1, description="take N rows drawn at random (seeded by seed)"
    )
    seed: int = Field(default=0, description="the seed of sample: the same seed, the same rows")
    split: str | None = Field(
        default=None, description="a Hugging Face dataset's split (train, test, ...)"
    )
    subset: str | None = Field(
        default=None, description="a Hugging Face Hub dataset's configuration (subset) name"
    )

    @field_validator("map")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for variable, column in value.items():
            if not _NAME.fullmatch(variable):
                raise ValueError(
                    f"{variable!r} is not a template variable name (letters, digits, _)"
                )
            if not column:
                raise ValueError(f"{variable!r} is mapped to an empty column name")
        return value

    @model_validator(mode="after")
    def _one_selection(self) -> InputConfig:
        if self.limit is not None and self.sample is not None:
            raise ValueError(
                "limit and sample both choose rows: give one (--limit N for the first N, "
                "--sample N --sample-seed S for a seeded random N)"
            )
        return self

    @property
    def short_selection(self) -> str | None:
        """:attr:`selection` in a few words, for run names and artifact titles; with the
        split, where one was chosen."""
        chosen = None
        if self.limit is not None:
            chosen = f"first {self.limit:,} rows"
        elif self.sample is not None:
            chosen = f"sample of {self.sample:,} rows, seed {self.seed}"
        parts = [f"split {self.split}"] if self.split else []
        return ", ".join([*parts, chosen] if chosen else parts) or None

    @property
    def selection(self) -> str | None:
        """How the rows were chosen, for the summary and the artifacts; None: all rows. (The
        pre-flight check says so when the dataset holds fewer: see ``chosen_from``.)"""
        if self.limit is not None:
            return f"the first {self.limit:,} rows (--limit {self.limit})"
        if self.sample is not None:
            flags = f"--sample {self.sample} --sample-seed {self.seed}"
            return f"{self.sample:,} rows sampled at random ({flags})"
        return None


def parse_map(pairs: Iterable[str]) -> dict[str, str]:
    """``["text=article", "id=guid"]`` as ``{"text": "article", "id": "guid"}``.

    Raises:
        ValueError: a pair without ``=``, or a variable given twice (naming both).
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        variable, sep, column = pair.partition("=")
        variable, column = variable.strip(), column.strip()
        if not sep or not variable or not column:
            raise ValueError(f"--map {pair!r}: write VARIABLE=COLUMN, e.g. --map text=article")
        if variable in mapping:
            raise ValueError(
                f"--map gives {variable!r} twice ({variable}={mapping[variable]} and {pair})"
            )
        mapping[variable] = column
    return mapping


def chosen_from(config: InputConfig, rows: int) -> str | None:
    """:attr:`InputConfig.selection` for a choice that took ``rows`` rows, after the split if
    one was chosen (``split test: the first 2 rows (--limit 2)``); a limit or a sample asking
    for more rows than the dataset holds took all of them, and says so. None: every row."""
    asked = config.limit if config.limit is not None else config.sample
    chosen = config.selection
    if asked is not None and rows < asked:
        flag = f"--limit {config.limit}" if config.limit is not None else f"--sample {asked}"
        chosen = f"all {rows:,} rows ({flag} asks for more than the dataset holds)"
    if config.split:
        return f"split {config.split}: {chosen or f'all {rows:,} rows'}"
    return chosen
