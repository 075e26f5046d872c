"""``refine export``: a run's output file as training data (trajectory, SFT or preference lines).

One pass over the output file, one record in memory at a time; the lines appear at ``--to``
only when every record was read and checked (see :mod:`flows.export.writers`), so a mismatched
dataset or a bad line never leaves a half export.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.markup import escape

from flows.cli.guard import run_guarded
from flows.cli.templates import ConfigFile, TemplateDirs
from refine.errors import ConfigError, FieldProblem, InputError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from flows.data.records import Item, Trajectory
    from flows.export.formats import ExportFormat, PairMode, Skip

__all__ = ["ExportRequest", "ExportSummary", "export_command", "run_export"]

FORMATS = ("trajectory", "sft", "preference")
PAIR_MODES = ("best-vs-rest", "all")
Build = Callable[["Trajectory", "Item | None"], "Iterable[BaseModel] | Skip"]


@dataclass(frozen=True)
class ExportRequest:
    """The command's options, checked against each other (see :meth:`check`)."""

    output: Path
    fmt: str
    to: Path
    dataset: Path | None = None
    reward: str | None = None
    min_reward: float | None = None
    margin: float | None = None
    pairs: str | None = None
    with_reference: bool = False
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ConfigError for flags that don't fit together, before anything is read."""
        from flows.export.writers import file_kind

        if self.fmt not in FORMATS:
            raise ConfigError(f"--format {self.fmt!r}: use one of {', '.join(FORMATS)}")
        if self.pairs is not None and self.pairs not in PAIR_MODES:
            raise ConfigError(f"--pairs {self.pairs!r}: use one of {', '.join(PAIR_MODES)}")
        if self.dataset is None and self.fmt != "trajectory":
            raise ConfigError(
                f"--format {self.fmt} needs --input DATASET: records do not keep the input x "
                "that the prompt is rendered from"
            )
        if self.dataset is None and self.with_reference:
            raise ConfigError("--with-reference needs --input DATASET: references live there")
        if self.fmt != "preference" and (self.margin is not None or self.pairs is not None):
            raise ConfigError("--margin and --pairs apply to --format preference only")
        if self.fmt == "trajectory" and self.min_reward is not None:
            raise ConfigError("--min-reward applies to --format sft and preference only")
        if self.margin is not None and self.margin < 0:
            raise ConfigError(f"--margin {self.margin}: must be 0 or more")
        sources = {self.output.resolve(), self.dataset.resolve() if self.dataset else None}
        if self.to.resolve() in sources:
            raise ConfigError(f"--to {self.to}: would overwrite an input; choose another file")
        file_kind(self.to)  # the suffix, and pyarrow for Parquet


@dataclass
class ExportSummary:
    """What an export wrote and what it left out, and why."""

    records: int = 0
    lines: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    torn_tail: bool = False
    superseded: int = 0  # records a later one of their id supersedes, left out
    without_record: int = 0  # dataset items the output has no record of
    bad_rows: list[FieldProblem] = field(default_factory=list)  # dataset rows not readable

    def report(self, request: ExportRequest) -> str:
        """Lines for the terminal."""
        lines = [
            f"wrote {self.lines} {request.fmt} line(s) to {request.to} "
            f"from {self.records} record(s) of {request.output}"
        ]
        if self.left_out:
            reasons = ", ".join(f"{n} {why}" for why, n in self.left_out.most_common())
            lines.append(f"left out {self.left_out.total()} item(s): {reasons}")
        if self.torn_tail:
            lines.append(f"skipped a torn last line of {request.output} (a run still writing?)")
        if self.superseded:
            lines.append(
                f"left out {self.superseded} earlier record(s) of ids written again "
                "(the latest record of an id wins)"
            )
        if self.without_record:
            lines.append(f"{self.without_record} item(s) of {request.dataset} have no record")
        if self.bad_rows:
            lines.append(f"ignored {len(self.bad_rows)} unreadable row(s) of {request.dataset}")
        return "\n".join(lines)


def _builder(request: ExportRequest, items: dict[str, Item]) -> Build:
    """The function that turns one record (and its dataset item) into lines or a Skip."""
    from flows.export.formats import Skip, preference_lines, sft_line, trajectory_lines
    from flows.export.inputs import StepOnePrompts

    def reference(item: Item | None) -> Any:
        return item.reference if request.with_reference and item is not None else None

    if request.fmt == "trajectory":

        def build_trajectory(record: Trajectory, item: Item | None) -> Iterable[BaseModel] | Skip:
            if not record.drafts:
                return Skip(f"no drafts ({record.status})")
            x = dict(item.fields) if item is not None else None
            label = request.reward or record.reward
            return list(trajectory_lines(record, label, x, reference(item)))

        return build_trajectory
    if request.dataset is None:  # check() makes sure; kept for the type checker
        raise ConfigError(f"--format {request.fmt} needs --input DATASET")
    prompts = StepOnePrompts(
        request.dataset, list(items.values()), request.config_file, request.overrides
    )

    def build_chat(record: Trajectory, item: Item | None) -> Iterable[BaseModel] | Skip:
        if item is None:
            raise ConfigError(f"--format {request.fmt} needs --input DATASET")
        label = request.reward or record.reward
        prompt = prompts(item)
        if request.fmt == "sft":
            line = sft_line(record, label, prompt, request.min_reward, reference(item))
            return line if isinstance(line, Skip) else [line]
        return preference_lines(
            record,
            label,
            prompt,
            margin=request.margin or 0.0,
            pairs=cast("PairMode", request.pairs or "best-vs-rest"),
            min_reward=request.min_reward,
            reference=reference(item),
        )

    return build_chat


def run_export(request: ExportRequest) -> ExportSummary:
    """Read the output file once and write the export; raises a RefineError on bad input."""
    from flows.data.output_reader import RecordReader
    from flows.export.formats import Skip
    from flows.export.inputs import read_dataset
    from flows.export.writers import open_export

    request.check()
    summary = ExportSummary()
    items: dict[str, Item] = {}
    if request.dataset is not None:
        items, summary.bad_rows = read_dataset(request.dataset)
    build = _builder(request, items)
    reader = RecordReader(request.output)
    missing: list[tuple[int, str]] = []
    seen_ids: set[str] = set()
    labels: set[str] = set()
    fmt = cast("ExportFormat", request.fmt)
    try:
        with open_export(request.to, fmt, request.with_reference) as writer:
            for number, record in reader:
                summary.records += 1
                seen_ids.add(record.id)
                for draft in record.drafts:
                    labels.update(draft.rewards)
                item = items.get(record.id)
                if request.dataset is not None and item is None:
                    missing.append((number, record.id))
                if missing:
                    continue  # the export fails below; keep reading only to name the others
                built = build(record, item)
                if isinstance(built, Skip):
                    summary.left_out[built.reason] += 1
                    continue
                for line in built:
                    writer.write(line)
                    summary.lines += 1
            _check_after_reading(request, missing, labels)
    except OSError as exc:
        raise ConfigError(f"export to {request.to} failed: {exc}") from None
    summary.torn_tail = reader.torn_tail
    summary.superseded = reader.superseded
    summary.without_record = len(items.keys() - seen_ids)
    return summary


def _check_after_reading(
    request: ExportRequest, missing: list[tuple[int, str]], labels: set[str]
) -> None:
    """Errors only a whole pass can tell: ids the dataset lacks, a reward no draft has."""
    if missing:
        problems = [
            FieldProblem(line, "id", f"{item_id!r} is not in {request.dataset}")
            for line, item_id in missing[:5]
        ]
        hint = (
            f"{len(missing)} record(s) in all have ids the dataset lacks: "
            "pass the dataset that run read (--input)"
        )
        raise InputError(request.output, problems, hint)
    if request.reward is not None and request.reward not in labels:
        known = ", ".join(sorted(labels)) or "none: the run scored no draft"
        raise ConfigError(f"--reward {request.reward!r}: no draft has it; rewards found: {known}")


def export_command(
    output: Annotated[Path, typer.Argument(help="A refine run output file (JSONL).")],
    to: Annotated[Path, typer.Option("--to", help="Target file: .jsonl or .parquet.")],
    fmt: Annotated[
        str, typer.Option("--format", help="trajectory, sft or preference.")
    ] = "trajectory",
    input_path: Annotated[
        Path | None,
        typer.Option("--input", help="The dataset the run read (.jsonl/.csv): x and references."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task kind, as given to refine run.")] = None,
    config: ConfigFile = None,
    template_dir: TemplateDirs = None,
    reward: Annotated[
        str | None, typer.Option(help="Primary reward label (default: the run's).")
    ] = None,
    min_reward: Annotated[
        float | None, typer.Option(help="sft/preference: chosen draft's reward at least this.")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="preference: chosen minus rejected reward (default 0).")
    ] = None,
    pairs: Annotated[
        str | None, typer.Option(help="preference: best-vs-rest (default) or all.")
    ] = None,
    with_reference: Annotated[
        bool, typer.Option("--with-reference", help="Add the dataset's references to the lines.")
    ] = False,
) -> None:
    """Export a run's trajectories as training data: one line per step, SFT chats or
    preference pairs."""
    request = ExportRequest(
        output=output,
        fmt=fmt,
        to=to,
        dataset=input_path,
        reward=reward,
        min_reward=min_reward,
        margin=margin,
        pairs=pairs,
        with_reference=with_reference,
        config_file=config,
        overrides={"task": task, "template_dirs": template_dir or None},
    )

    def action() -> ExportSummary:
        try:
            return run_export(request)
        except KeyboardInterrupt:  # run_guarded's own message speaks of resuming a run
            Console(stderr=True).print(f"interrupted: {escape(str(to))} is as it was")
            raise typer.Exit(130) from None

    summary = run_guarded(action)
    Console().print(escape(summary.report(request)), highlight=False, soft_wrap=True)
