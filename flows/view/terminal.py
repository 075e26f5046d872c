"""``refine show`` in the terminal: an item's drafts step by step, or the table of items.

Each draft shows its word diff from the one before in git's word-diff notation, so the change
reads without colour too: ``[-removed words-]`` (red, struck through) and ``{+added words+}``
(green). Then its tokens, rewards, problems, critique and, for a best-of-N step, every
candidate. The item's header says its status, why it stopped and which draft was returned.
Texts from the records are shown as plain text, never as rich markup, and through
:func:`~flows.view.safe_text.visible`: a control character or bidi control in a draft is shown,
not sent to the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from flows.data.records import Candidate, Trajectory
from flows.view.diff import Change
from flows.view.items import DraftView, ItemSummary, draft_views, summarize
from flows.view.safe_text import visible

__all__ = ["diff_text", "item_view", "items_table", "show_items"]

_STYLES = {"same": "", "removed": "red strike", "added": "green"}
_ID_CHARS = 24
_MARKS = {"same": ("", ""), "removed": ("[-", "-]"), "added": ("{+", "+}")}


def diff_text(changes: Iterable[Change]) -> Text:
    """The changes as one text, removed runs as ``[-...-]`` and added runs as ``{+...+}``.

    Whitespace that ends a changed run stays outside its marks (``{+to cars+} on``), and a
    replaced run is written as git writes it: ``[-Street.-]{+Road+}``.
    """
    text = Text()
    runs = list(changes)
    for number, change in enumerate(runs):
        whole = visible(change.text)
        body = whole.rstrip()
        opening, closing = _MARKS[change.op]
        text.append(opening + body + closing, style=_STYLES[change.op])
        following = runs[number + 1].op if number + 1 < len(runs) else None
        if not (change.op == "removed" and following == "added"):
            text.append(whole[len(body) :])
    return text


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _rewards(rewards: dict[str, float]) -> str:
    return ", ".join(f"{visible(label)} {_number(value)}" for label, value in rewards.items())


def _reward_span(row: ItemSummary) -> str:
    if row.first_reward is None or row.last_reward is None:
        return "-"
    if row.steps == 1:
        return _number(row.last_reward)
    return f"{_number(row.first_reward)} → {_number(row.last_reward)}"


def items_table(records: Iterable[Trajectory]) -> Group:
    """A table of one row per item: id, status, stop reason, steps, returned step, primary
    reward of the first and last draft that have it, and tokens; under it, each failed item's
    error (one line, cut at the terminal's width)."""
    rows = [summarize(record) for record in records]
    labels = {row.reward for row in rows if row.reward}
    one_label = labels.pop() if len(labels) == 1 else None
    table = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    widest = max((len(row.id) for row in rows), default=2)
    # numbers and the id never shrink (a cut number misleads); the stop reason folds instead
    table.add_column("id", overflow="fold", min_width=min(widest, _ID_CHARS))
    table.add_column("status", no_wrap=True)
    table.add_column("stop", overflow="fold", min_width=4)
    for name in ("steps", "output", one_label or "reward", "tokens"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for row in rows:
        reward = _reward_span(row)
        if reward != "-" and row.reward and one_label is None:
            reward = f"{visible(row.reward)} {reward}"
        cells: list[RenderableType] = [
            Text(visible(row.id)),
            Text(visible(row.status), style="red" if row.status == "failed" else "green"),
            Text(visible(row.stop_reason or "-")),
            str(row.steps),
            "-" if row.selected_step is None else f"step {row.selected_step}",
            reward,
            f"{row.tokens:,}",
        ]
        table.add_row(*cells)
    errors: list[RenderableType] = []
    for row in rows:
        if row.status == "failed":
            error = row.error or "no error recorded"
            line = Text.assemble((visible(row.id), "red"), f" failed: {visible(error)}")
            line.overflow = "fold"
            errors.append(line)
    return Group(table, *errors)


def _header(record: Trajectory) -> Text:
    row = summarize(record)
    header = Text()
    header.append(f"item {visible(record.id)}", style="bold")
    header.append(" · ")
    header.append(visible(record.status), style="red" if record.status == "failed" else "green")
    header.append(f" · stop: {visible(record.stop_reason or '-')}")
    header.append(f" · {row.steps} step{'s' if row.steps != 1 else ''}")
    if record.selected_step is not None:
        header.append(f" · returned: step {record.selected_step}", style="bold")
    elif record.output is not None:
        header.append(" · returned: an output of no recorded step")
    else:
        header.append(" · returned: nothing")
    if row.reward and row.first_reward is not None:
        header.append(f" · {visible(row.reward)} {_reward_span(row)}")
    if record.total_reward is not None:
        header.append(f" (R {_number(record.total_reward)})")
    header.append(f" · {row.tokens:,} tokens")
    return header


def _candidates(view: DraftView) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("", "#", "seed", "tokens", "rewards", "problems", "text"):
        table.add_column(column, overflow="fold")

    def row(candidate: Candidate) -> list[RenderableType]:
        won = candidate.index == view.draft.candidate
        return [
            Text("▶" if won else ""),
            str(candidate.index),
            "-" if candidate.seed is None else str(candidate.seed),
            f"{candidate.usage.tokens:,}",
            _rewards(candidate.rewards) or "-",
            Text(
                visible("; ".join(candidate.problems)) or "none",
                style="red" if candidate.problems else "",
            ),
            Text(visible(candidate.text)),
        ]

    for candidate in view.candidates:
        table.add_row(*row(candidate))
    return table


def _draft(view: DraftView) -> list[RenderableType]:
    draft = view.draft
    title = f"step {view.step}" + (" · fix" if view.kind == "fix" else "")
    if view.selected:
        title += " · returned"
    parts: list[RenderableType] = [Rule(Text(title, style="bold"), align="left")]
    if view.step == 1 or view.removed_words + view.added_words == 0:
        parts.append(
            Text(visible(draft.text)) if draft.text else Text("(empty draft)", style="dim")
        )
        if view.step != 1:
            parts.append(Text("(unchanged from the previous draft)", style="dim"))
    else:
        parts.append(diff_text(view.changes))
        counts = [f"-{view.removed_words}"] if view.removed_words else []
        counts += [f"+{view.added_words}"] if view.added_words else []
        parts.append(Text(" ".join(counts) + " words", style="dim"))
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="dim")
    facts.add_column()
    own = draft.usage
    tokens = (
        f"{view.own_tokens:,} (prompt {own.prompt_tokens:,}, completion {own.completion_tokens:,})"
    )
    if view.tokens != view.own_tokens:
        tokens += f"; {view.tokens:,} with the step's other requests"
    if draft.cached:
        tokens += "; cached"
    facts.add_row("tokens", tokens)
    rewards = _rewards(view.rewards) or "none"
    if view.reward_notes:
        rewards += " (" + visible("; ".join(view.reward_notes)) + ")"
    facts.add_row("rewards", rewards)
    problems = (
        Text(visible("\n".join(view.problems)), style="red") if view.problems else Text("none")
    )
    facts.add_row("problems", problems)
    if view.critique is not None:
        facts.add_row("critique", Text(visible(view.critique), style="yellow"))
    for side in view.side_requests:
        if side.role != "critique":
            facts.add_row(visible(side.role), Text(visible(side.text)))
    if draft.finish_reason not in (None, "stop"):
        facts.add_row("finish", Text(visible(draft.finish_reason or "")))
    parts.append(Padding(facts, (0, 0, 0, 2), expand=False))
    if view.candidates:
        if any(candidate.usable for candidate in view.candidates):
            choice = f"{len(view.candidates)} candidates; won: #{draft.candidate}"
        else:  # the record still names one, whose text was kept: it did not win anything
            choice = f"{len(view.candidates)} candidates, none usable; kept: #{draft.candidate}"
        if draft.choice:
            choice += f" ({visible(draft.choice)})"
        parts.append(Padding(Text(choice, style="dim"), (0, 0, 0, 2), expand=False))
        parts.append(Padding(_candidates(view), (0, 0, 0, 2), expand=False))
    return parts


def item_view(record: Trajectory) -> Group:
    """One item: its header, its error if it failed, then each draft with its diff and facts."""
    parts: list[RenderableType] = [_header(record)]
    if record.error:
        parts.append(Text(f"error: {visible(record.error)}", style="red"))
    views = draft_views(record)
    if not views:
        parts.append(Text("no drafts: the item failed before its first draft", style="dim"))
    for view in views:
        parts.extend(_draft(view))
    if record.output is not None and record.selected_step is None:
        parts.append(Text(f"output: {visible(record.output)}"))
    return Group(*parts)


def show_items(console: Console, records: Iterable[Trajectory]) -> None:
    """Print every record with :func:`item_view`, a blank line between items."""
    for number, record in enumerate(records):
        if number:
            console.print()
        console.print(item_view(record))
