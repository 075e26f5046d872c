"""The command-line options that choose a dataset's rows and map its columns (``[input]``),
shared by ``refine run``, ``serve`` and ``deploy``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.data.input_config import parse_map

__all__ = [
    "INPUT_HELP",
    "Limit",
    "MapOption",
    "Sample",
    "SampleSeed",
    "Split",
    "Subset",
    "input_overrides",
]

INPUT_HELP = (
    "Dataset: .jsonl, .csv or .parquet, a folder saved by Hugging Face datasets' "
    "save_to_disk, or a Hub dataset name (owner/name); one item a row."
)


def _map_option(values: list[str] | None) -> list[str] | None:
    """``--map`` as typer checks it: each ``VARIABLE=COLUMN``, else a usage error (exit 2)."""
    try:
        parse_map(values or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return values


MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="VARIABLE=COLUMN: feed a template variable (or id, reference) from the dataset's "
        "column of another name (repeatable), e.g. --map text=article.",
        callback=_map_option,
    ),
]
Limit = Annotated[
    int | None, typer.Option(min=1, help="Take only the first N rows (to try a run first).")
]
Sample = Annotated[
    int | None,
    typer.Option(min=1, help="Take N rows drawn at random, the same for the same --sample-seed."),
]
SampleSeed = Annotated[
    int | None,
    typer.Option(
        help="Seed of --sample (default 0). Not --seed: that one goes into every request."
    ),
]
Split = Annotated[str | None, typer.Option(help="A Hugging Face dataset's split: train, test, ...")]
Subset = Annotated[
    str | None, typer.Option(help="A Hugging Face Hub dataset's configuration (subset).")
]


def input_overrides(
    map_pairs: list[str] | None,
    limit: int | None,
    sample: int | None,
    sample_seed: int | None,
    split: str | None,
    subset: str | None,
) -> dict[str, Any]:
    """The ``input`` table of the run's overrides (None: the config's or the default)."""
    return {
        "map": parse_map(map_pairs) if map_pairs else None,
        "limit": limit,
        "sample": sample,
        "seed": sample_seed,
        "split": split,
        "subset": subset,
    }
