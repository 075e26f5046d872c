"""How much of each step's prompt a server could take from its prefix cache.

For every packaged task (or ``--task``), the items of ``examples/<task>.jsonl`` are rendered the
way a run renders them (:class:`flows.loop.render.StepRenderer`: system prompt, demos as earlier
turns, the step's template) for steps 1..T, with drafts of realistic length (``--draft-words``;
or the real drafts of an output file, ``--records``), put through the embedded model's chat
template and tokenized with its tokenizer. Per step it prints the mean prompt length and two
shares of its tokens:

- **same item**: the common token prefix with the same item's prompt at the step before, what
  llama.cpp's prompt cache and vLLM's automatic prefix caching re-use across an item's steps;
- **other items**: the longest common token prefix with any other item's prompt (any step),
  what they re-use across items (the system prompt and the demos);

and ``re-usable``, the larger of the two per prompt. Without the ``[local]`` extra it counts
characters instead of tokens, and says so.

    python -m benchmarks.prefix_share --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flows.config.run import RunConfig
from flows.data.records import Draft, Item
from flows.loop.defaults import with_task_defaults
from flows.loop.render import Messages, StepRenderer
from prompts import TASK_KINDS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILLER = [
    "the",
    "committee",
    "said",
    "that",
    "the",
    "plan",
    "would",
    "go",
    "ahead",
    "next",
    "spring",
    "as",
    "agreed",
]


def tokenizer() -> tuple[Callable[[Messages], list[int]], str]:
    """Messages to token ids through the default model's chat template, and what is counted.

    Falls back to the characters of the messages' contents (code points) without llama_cpp.
    """
    try:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from flows.config.local import LocalModelConfig
        from flows.local.model import resolve_model
    except ImportError:
        return (lambda messages: [ord(c) for m in messages for c in m["content"]]), "characters"
    served = resolve_model(LocalModelConfig())
    model = Llama(str(served.path), vocab_only=True, verbose=False)
    template = model.metadata["tokenizer.chat_template"]
    text = model._model.token_get_text
    formatter = Jinja2ChatFormatter(
        template, eos_token=text(model.token_eos()), bos_token=text(model.token_bos())
    )

    def tokens(messages: Messages) -> list[int]:
        prompt = formatter(messages=messages).prompt
        return list(model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    return tokens, f"{served.alias} tokens"


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def draft_text(item_index: int, step: int, words: int) -> str:
    """A stand-in draft of ``words`` words, different for each item and step."""
    shifted = FILLER[step % len(FILLER) :] + FILLER[: step % len(FILLER)]
    return f"Draft {step} of item {item_index}: " + " ".join(
        shifted[i % len(shifted)] for i in range(words)
    )


def prompts_of(
    task: str, steps: int, words: int, records: dict[str, dict[str, Any]]
) -> dict[str, list[Messages]]:
    """Each item's prompts for steps 1..steps (its own template: ``initial``, then ``refine``)."""
    renderer = StepRenderer.for_config(with_task_defaults(RunConfig(task=task, steps=steps), []))
    rows = [json.loads(line) for line in (EXAMPLES / f"{task}.jsonl").read_text().splitlines()]
    found: dict[str, list[Messages]] = {}
    for index, row in enumerate(rows, 1):
        item_id = str(row.get("id", index))
        fields = {k: v for k, v in row.items() if k not in ("id", "reference")}
        item = Item(id=item_id, line=index, fields=fields)
        recorded = records.get(item_id, {}).get("drafts", [])
        texts = [d.get("text") or "" for d in recorded]
        drafts = [
            Draft(step=t, text=texts[t - 1] if t <= len(texts) else draft_text(index, t, words))
            for t in range(1, steps)
        ]
        found[item_id] = [
            renderer.messages(renderer.fields(item), drafts[: step - 1], step)
            for step in range(1, steps + 1)
        ]
    return found


def shares(tokenized: dict[str, list[list[int]]], steps: int) -> list[dict[str, float]]:
    """Per step: mean prompt length, and mean shares re-usable from the same/other items."""
    rows = []
    for step in range(steps):
        lengths, same, other, either = [], [], [], []
        for item_id, prompts in tokenized.items():
            tokens = prompts[step]
            own = common_prefix(tokens, prompts[step - 1]) if step else 0
            elsewhere = max(
                (common_prefix(tokens, p) for k, ps in tokenized.items() if k != item_id
                 for p in ps),
                default=0,
            )  # fmt: skip
            lengths.append(len(tokens))
            same.append(own / len(tokens))
            other.append(elsewhere / len(tokens))
            either.append(max(own, elsewhere) / len(tokens))
        rows.append(
            {
                "step": step + 1,
                "tokens": statistics.mean(lengths),
                "same": statistics.mean(same),
                "other": statistics.mean(other),
                "either": statistics.mean(either),
            }
        )
    return rows


def main(args: argparse.Namespace) -> None:
    tokens, unit = tokenizer()
    records: dict[str, dict[str, Any]] = {}
    if args.records:
        lines = args.records.read_text().splitlines()
        records = {r["id"]: r for r in map(json.loads, filter(None, lines))}
    tasks = [args.task] if args.task else sorted(TASK_KINDS)
    print(f"counted in {unit}; drafts: "
          f"{args.records or f'{args.draft_words}-word stand-ins'}\n")  # fmt: skip
    print("| task | step | prompt length | same item, step before | other items | re-usable |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        if not (EXAMPLES / f"{task}.jsonl").exists():
            continue
        rendered = prompts_of(task, args.steps, args.draft_words, records)
        tokenized = {k: [tokens(m) for m in ms] for k, ms in rendered.items()}
        for row in shares(tokenized, args.steps):
            same = f"{row['same']:.0%}" if row["step"] > 1 else "-"
            print(f"| {task} | {row['step']} | {row['tokens']:.0f} | {same} | "
                  f"{row['other']:.0%} | {row['either']:.0%} |")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASK_KINDS), default=None)
    parser.add_argument("--steps", type=int, default=3, help="steps rendered per item")
    parser.add_argument(
        "--draft-words", type=int, default=60, help="length of the stand-in drafts, in words"
    )
    parser.add_argument("--records", type=Path, default=None, help="take drafts from an output")
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main(parse())
