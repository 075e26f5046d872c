"""A real vLLM server: what refinement relies on, and its prefix cache seen in the records.

vLLM does not run inside CI here (see benchmarks/README.md, "A real vLLM server": the official
wheel is CUDA-only; the CPU build needs a torch that is not on PyPI and takes minutes to start),
so these tests run where one is available: start vLLM with automatic prefix caching and
prompt-token details, e.g.

    vllm serve MODEL --enable-prefix-caching --enable-prompt-tokens-details

and point the tests at it:

    REFINE_VLLM_BASE_URL=http://127.0.0.1:8011/v1 REFINE_VLLM_MODEL=NAME \\
        python -m pytest -m vllm tests/llm/test_vllm_server.py

Without ``REFINE_VLLM_BASE_URL`` they are skipped, saying why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.cli_helpers import cli_env, read_records, run_refine
from tests.prefect_server import PrefectServer

BASE_URL = os.environ.get("REFINE_VLLM_BASE_URL", "")
MODEL = os.environ.get("REFINE_VLLM_MODEL", "")

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not BASE_URL, reason="no vLLM server: set REFINE_VLLM_BASE_URL"),
]

SYSTEM = "You write faithful, concise summaries. " + " ".join(
    f"Rule {i}: keep every name, figure and date exactly as the text gives it." for i in range(40)
)


def _chat(user: str, max_tokens: int = 8) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    answer = httpx.post(f"{BASE_URL}/chat/completions", json=body, timeout=900)
    answer.raise_for_status()
    return dict(answer.json())


def test_answers_carry_usage_finish_reason_and_cached_prompt_tokens() -> None:
    first = _chat("Summarize: the ferry stops on Sundays.")
    second = _chat("Summarize: the library opens at nine.")
    for answer in (first, second):
        assert answer["choices"][0]["finish_reason"] in ("stop", "length")
        assert answer["usage"]["prompt_tokens"] > 300 and answer["usage"]["completion_tokens"] > 0
    details = second["usage"].get("prompt_tokens_details")
    assert details is not None, "start vLLM with --enable-prompt-tokens-details"
    # the long system prompt is a shared prefix: vLLM reuses its KV blocks for the second
    assert details["cached_tokens"] >= 0.8 * len(SYSTEM.split()), second["usage"]


def test_a_refine_run_records_the_cached_prompt_tokens_of_each_step(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    row = {"id": "v1", "text": "The council voted 6 to 3 to turn the old depot into a library."}
    dataset = tmp_path / "one.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    env = cli_env(prefect_server, tmp_path, OPENAI_API_KEY="unused")
    output = tmp_path / "out.jsonl"
    result = run_refine(
        ["run", str(dataset), "--task", "summarize", "--steps", "2", "--base-url", BASE_URL,
         "--model", MODEL, "--temperature", "0", "--max-tokens", "64", "--no-cache",
         "-o", str(output)],
        env,
        timeout=1800,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    (record,) = read_records(output)
    drafts = record["drafts"]
    assert len(drafts) == 2, record
    usage = drafts[1]["usage"]
    assert usage["cached_tokens"] > 0.3 * usage["prompt_tokens"], usage  # system, demos, text
