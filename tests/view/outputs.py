"""Real output files for the viewers' tests, one per task kind, written by the real batch flow
against the fake OpenAI server (real HTTP) and a real Prefect server.

:func:`write_view_outputs` runs six small runs, one fresh fake server each (so no script of one
run answers another), and returns their files as :class:`ViewOutputs`. The scripted drafts are
written so that consecutive drafts differ by known words (see the constants), so a test can
check the word diff a viewer shows. What each file holds:

=========== ==================================================================================
summarize   ``elm``: 3 drafts with rouge_l rewards, stop ``max_steps``, output step 3;
            ``bakery``: failed at step 1 (a 400), no drafts; ``parser``: failed at step 2, its
            step-1 draft kept as output
translate   ``cat``: 2 drafts with chrf rewards
qa          ``road``: 2 drafts with token_f1 and exact_match rewards
codegen     ``add``: a failing draft (test_pass_rate 0.25, problems quoting the failing
            asserts), then a ``fix`` draft that passes; stop ``valid``
critique    generic task with critique and no rewards: ``prime``: "51" critiqued, then "53";
            stop ``critic_satisfied``
best_of_n   generic task, 3 candidates validated as JSON: ``city``: candidate 2 wins
=========== ==================================================================================

``tests/view/conftest.py`` builds them once per session (fixture ``view_outputs``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from flows.batch import refine_batch
from flows.data.output_reader import RecordReader
from tests.batch_helpers import make_config, write_rows
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer

__all__ = ["ELM_DRAFTS", "PRIME_CRITIQUE", "ViewOutputs", "write_view_outputs"]

ELM_TEXT = "The council voted to close Elm Road to cars on Sundays."
ELM_DRAFTS = (
    "Council closes a road.",
    "The council closes Elm Road on Sundays.",
    "The council closes Elm Road to cars on Sundays.",
)
"""The three drafts of summarize ``elm``: step 2 removes ``Council`` ``a`` ``road.`` and
adds ``The`` ``council`` ``Elm`` ``Road`` ``on`` ``Sundays.``; step 3 adds ``to cars``."""
PARSER_DRAFT = "A parser leak was fixed."
CAT_DRAFTS = ("Le chat dort sur le tapis.", "Le chat dort sur le tapis chaud.")
ROAD_DRAFTS = ("The road is Elm Street.", "Elm Road")
FAILING_CODE = "```python\ndef add(a, b):\n    return a - b\n```"
PASSING_CODE = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
ADD_TESTS = (
    "assert add(0, 0) == 0\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(5, 5) == 10"
)
PRIME_CRITIQUE = "51 = 3 x 17 is not prime."
CITY_VALID = '{"city": "Paris"}'


@dataclass(frozen=True)
class ViewOutputs:
    """The output file of each run (see the module doc for what each holds)."""

    summarize: Path
    translate: Path
    qa: Path
    codegen: Path
    critique: Path
    best_of_n: Path

    def all(self) -> dict[str, Path]:
        """Every file by its field name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


async def _run(folder: Path, rows: list[dict[str, Any]], **config: Any) -> Path:
    """One run in ``folder`` on a fresh fake server scripted by ``config["script"]``: a list
    of ``(match, replies)``. Returns its output file, checked to hold a record per row."""
    folder.mkdir(parents=True)
    data = write_rows(folder / "data.jsonl", rows)
    out = folder / "out.jsonl"
    scripts: list[tuple[str, list[Reply]]] = config.pop("script")
    with FakeOpenAI() as server:
        for match, replies in scripts:
            server.script(replies, match=match)
        await refine_batch(data, out, make_config(server, folder, **config))
    written = [record.id for _, record in RecordReader(out)] if out.exists() else []
    if sorted(written) != sorted(row["id"] for row in rows):
        raise RuntimeError(f"the {folder.name} run wrote {written}, not every row: see its log")
    return out


async def _write_all(folder: Path) -> ViewOutputs:
    summarize = await _run(
        folder / "summarize",
        [
            {"id": "elm", "text": ELM_TEXT, "reference": "Elm Road closes to cars on Sundays."},
            {"id": "bakery", "text": "The bakery now bakes rye.", "reference": "Rye."},
            {"id": "parser", "text": "A parser memory leak was fixed.", "reference": "Fixed."},
        ],
        task="summarize",
        steps=3,
        script=[
            ("Elm Road to cars", [Reply(content=text) for text in ELM_DRAFTS]),
            ("bakery", [Reply(status=400, content="prompt too long for context")]),
            ("parser memory", [Reply(content=PARSER_DRAFT), Reply(status=400)]),
        ],
    )
    translate = await _run(
        folder / "translate",
        [
            {
                "id": "cat",
                "text": "The cat sleeps on the warm mat.",
                "reference": "Le chat dort sur le tapis chaud.",
            }
        ],
        task="translate",
        steps=2,
        script=[("warm mat", [Reply(content=text) for text in CAT_DRAFTS])],
    )
    qa = await _run(
        folder / "qa",
        [
            {
                "id": "road",
                "question": "Which road closes on Sundays?",
                "context": ELM_TEXT,
                "reference": "Elm Road",
            }
        ],
        task="qa",
        steps=2,
        script=[("closes on Sundays", [Reply(content=text) for text in ROAD_DRAFTS])],
    )
    codegen = await _run(
        folder / "codegen",
        [{"id": "add", "prompt": "Write add(a, b) returning the sum.", "tests": ADD_TESTS}],
        task="codegen",
        steps=4,
        script=[
            ("Fix the latest solution", [Reply(content=PASSING_CODE)]),
            ("returning the sum", [Reply(content=FAILING_CODE)]),
        ],
    )
    critique = await _run(
        folder / "critique",
        [{"id": "prime", "input": "Name a prime above 50."}],
        task="generic",
        steps=5,
        critique={"enabled": True},
        script=[
            ("Respond to the input above", [Reply(content="51")]),
            (
                "Review this draft critically",
                [Reply(content=PRIME_CRITIQUE), Reply(content="No issues.")],
            ),
            ("Write a better answer", [Reply(content="53")]),
        ],
    )
    best_of_n = await _run(
        folder / "best_of_n",
        [{"id": "city", "input": "Give the city of the Eiffel Tower as JSON."}],
        task="generic",
        steps=1,
        samples=3,
        validators=["json"],
        stop={"stop_when_valid": True},
        script=[
            ("seed=0", [Reply(content="not json")]),
            ("seed=1", [Reply(content="{broken")]),
            ("seed=2", [Reply(content=CITY_VALID)]),
        ],
    )
    return ViewOutputs(summarize, translate, qa, codegen, critique, best_of_n)


def write_view_outputs(folder: Path, prefect: PrefectServer) -> ViewOutputs:
    """Run the six runs into ``folder`` (which must not hold them yet) with flows reporting to
    ``prefect``. Raises RuntimeError when a run did not write a record per row."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect.api_url}):
        return asyncio.run(_write_all(folder))
