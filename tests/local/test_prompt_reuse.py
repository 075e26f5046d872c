"""Prompt-prefix reuse on the embedded model, for real: a step re-reads only what changed.

One slot and two items in flight, so the slot serves the other item between an item's two
steps: only the slot's prompt cache (saved states, not just the tokens left in its context) can
hand step 2 its computed prefix. The records must say so in ``usage.cached_tokens``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import read_records, run_refine
from tests.local.test_local_model import EXAMPLES, _first_rows, marked_env  # noqa: F401

pytestmark = pytest.mark.local_model


def test_step_two_reads_its_prefix_from_the_prompt_cache(
    marked_env: tuple[dict, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    env, _ = marked_env
    dataset = _first_rows(EXAMPLES / "summarize.jsonl", 2, tmp_path / "two.jsonl")
    config = tmp_path / "refine.toml"
    config.write_text("[local_model]\nparallel = 1\n")  # reuse is on by default
    output = tmp_path / "out.jsonl"
    result = run_refine(
        ["run", str(dataset), "--task", "summarize", "--steps", "2", "--max-tokens", "32",
         "--concurrency", "2", "--config", str(config), "-o", str(output), "--no-cache"],
        env,
        timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    records = read_records(output)
    assert len(records) == 2
    firsts = sorted((r["drafts"][0]["usage"] for r in records), key=lambda u: u["cached_tokens"])
    assert firsts[0]["cached_tokens"] <= 1  # the very first prompt: nothing computed yet
    shared = firsts[1]["cached_tokens"]  # the other item's step 1: system prompt and demos
    assert shared > 50
    seconds = [r["drafts"][1] for r in records if len(r["drafts"]) > 1]
    assert seconds, "no item reached step 2"
    for draft in seconds:
        usage = draft["usage"]
        # beyond the system prompt and demos, the item's article comes from a saved state
        # (the slot's context holds the other item's prompt by then): without the prompt
        # cache only the prefix shared with that other prompt would be cached
        assert usage["cached_tokens"] >= shared + 100, (usage, shared)
