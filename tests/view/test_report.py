"""``refine report --html``: the page of real outputs of every task kind, opened in real
headless Chromium (driven by Playwright, the system's browser: nothing is downloaded)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch
from flows.cli.report import page_size
from flows.data.records import request_dicts
from flows.view.html import Written, write_report
from tests.batch_helpers import make_config, read_records, write_rows
from tests.cli_helpers import run_refine
from tests.deploy_helpers import CHROMIUM_FLAGS
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.view.outputs import ViewOutputs
from tests.view.test_show import two_drafts_run

HOSTILE = (
    '<script>document.title = "pwned"</script> '
    '<img src="http://127.0.0.1:9/x" onerror="document.title = \'pwned\'"> & more'
)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium: the system's, with the flags the UI tests use. Playwright's sync
    API runs an event loop while it is open, so a test asks for it after the fixtures that run
    flows (and one test uses it, to launch it once)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Page:
    """A browser page on one report that refuses, and notes, every request that is not the
    file itself or a data: URI, and notes every script error."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1300, "height": 1000})
        self.page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(path.as_uri())

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _request(self, request: Any) -> None:
        if not request.url.startswith(("file:", "data:")):
            self.outside.append(request.url)

    def column(self, index: int) -> list[str]:
        cells = self.page.locator(f"#items-table tbody tr td:nth-child({index + 1})")
        return [text.strip() for text in cells.all_inner_texts()]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def hostile_output(fake_server: FakeOpenAI, prefect_api: PrefectServer, tmp_path: Path) -> Path:
    """A real generic run (no rewards) whose drafts hold a script and an image with an event
    handler, and whose id holds markup."""
    data = write_rows(tmp_path / "data.jsonl", [{"id": "x<b>", "input": "Say hello."}])
    fake_server.script([Reply(content=HOSTILE), Reply(content=HOSTILE + " again")])
    out = tmp_path / "hostile" / "out.jsonl"
    out.parent.mkdir()
    config = make_config(fake_server, tmp_path, task="generic", steps=2)
    asyncio.run(refine_batch(data, out, config))
    assert [d["text"] for d in read_records(out)[0]["drafts"]] == [HOSTILE, HOSTILE + " again"]
    return out


def _reward(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _expected_rows(output: Path) -> list[list[str]]:
    """The table's cells as the records say, in file order."""
    rows = []
    for record in read_records(output):
        label = record.get("reward") or next(
            (key for draft in record["drafts"] for key in draft["rewards"]), None
        )
        values = [d["rewards"][label] for d in record["drafts"] if label in d["rewards"]]
        tokens = sum(
            request["usage"]["prompt_tokens"] + request["usage"]["completion_tokens"]
            for draft in record["drafts"]
            for request, _ in request_dicts(draft)  # candidates and side requests too
        )
        selected = record["selected_step"]
        rows.append(
            [
                record["id"],
                record["status"],
                record["stop_reason"] or "",
                str(len(record["drafts"])),
                _reward(values[0] if values else None),
                _reward(values[-1] if values else None),
                str(tokens),
                "" if selected is None else str(selected),
            ]
        )
    return rows


def _anchor(page: Any, item_id: str) -> str:
    """The HTML id of an item's details, from its link in the items table."""
    link = page.locator("#items-table a").filter(has_text=item_id)
    return str(link.get_attribute("href"))


def _words(page: Any, anchor: str, step: int, tag: str) -> list[str]:
    texts = page.locator(f"{anchor} .draft[data-step='{step}'] .text:not(.critique) {tag}")
    return " ".join(texts.all_inner_texts()).split()


def test_the_page_in_chromium(
    hostile_output: Path, view_outputs: ViewOutputs, browser: Any, tmp_path: Path
) -> None:
    """The table holds the records' cells and sorts, the diff shows the removed and added
    words, model output is text, and no request leaves the page, on every task kind."""
    summarize = view_outputs.summarize
    page_path = tmp_path / "summarize.html"
    done = run_refine(["report", str(summarize), "--html", str(page_path)], env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert f"wrote {page_path} (3 items" in done.stdout

    view = Page(browser, page_path)
    page = view.page
    rows = _expected_rows(summarize)
    columns = [view.column(index) for index in range(8)]
    assert [list(row) for row in zip(*columns, strict=True)] == rows
    by_id = {row[0]: row for row in rows}
    assert sorted(by_id) == ["bakery", "elm", "parser"]
    assert by_id["elm"][1:4] == ["ok", "max_steps", "3"] and by_id["elm"][5] != ""
    assert by_id["bakery"][1:6] == ["failed", "error", "0", "", ""]

    tokens = [int(value) for value in view.column(6)]
    page.click("#items-table th:nth-child(7) button")
    assert [int(value) for value in view.column(6)] == sorted(tokens)
    page.click("#items-table th:nth-child(7) button")
    assert [int(value) for value in view.column(6)] == sorted(tokens, reverse=True)
    page.click("#items-table th:nth-child(1) button")
    assert view.column(0) == ["bakery", "elm", "parser"]
    # the rows moved whole: each row still carries its item's cells
    assert [list(row) for row in zip(*(view.column(i) for i in range(8)), strict=True)] == [
        by_id[item_id] for item_id in ("bakery", "elm", "parser")
    ]
    page.click("#items-table th:nth-child(5) button")  # reward, step 1: the empty one last
    assert view.column(0)[-1] == "bakery"

    elm = _anchor(page, "elm")
    assert page.locator(elm).get_attribute("open") is None
    page.click(f"#items-table a[href='{elm}']")
    assert page.locator(elm).get_attribute("open") is not None
    assert _words(page, elm, 2, "del") == ["Council", "a", "road."]
    assert _words(page, elm, 2, "ins") == ["The", "council", "Elm", "Road", "on", "Sundays."]
    assert _words(page, elm, 3, "del") == [] and _words(page, elm, 3, "ins") == ["to", "cars"]
    first = page.locator(f"{elm} .draft[data-step='1'] .text").inner_text()
    assert first == "Council closes a road."
    returned = page.locator(f"{elm} .draft.returned")
    assert returned.count() == 1 and returned.get_attribute("data-step") == "3"
    bakery = page.locator(_anchor(page, "bakery"))
    assert "prompt too long for context" in str(bakery.locator(".error").text_content())
    assert bakery.locator(".draft").count() == 0
    assert page.locator("img[src^='data:image/png;base64,']").count() == 3
    assert page.locator("#no-reward").count() == 0 and page.locator("#torn-tail").count() == 0

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert view.outside == [] and view.errors == []
    view.close()

    for kind, output in view_outputs.all().items():
        other = tmp_path / f"{kind}.html"
        assert write_report(output, other).items == len(read_records(output))
        view = Page(browser, other)
        cells = [view.column(index) for index in range(8)]
        assert [list(row) for row in zip(*cells, strict=True)] == _expected_rows(output), kind
        rewarded = any(d["rewards"] for r in read_records(output) for d in r["drafts"])
        assert view.page.locator("#no-reward").count() == (0 if rewarded else 1), kind
        assert view.page.locator("details.item").count() == len(read_records(output)), kind
        if kind == "best_of_n":  # every candidate, the winner marked
            candidates = view.page.locator(".candidate")
            assert candidates.count() == 3
            winner = view.page.locator(".candidate:has(.returned)")
            assert winner.get_attribute("data-index") == "2"
        assert view.outside == [] and view.errors == [], kind
        view.close()

    page_path = tmp_path / "hostile.html"
    write_report(hostile_output, page_path)
    html = page_path.read_text("utf-8")
    assert "<script>document.title" not in html and '<img src="http' not in html
    assert "&lt;script&gt;document.title" in html and "x&lt;b&gt;" in html
    assert html.count("<script>") == 1  # the page's own sorting script
    view = Page(browser, page_path)
    view.page.locator("#item-0").evaluate("node => { node.open = true; }")
    shown = view.page.locator("#item-0 .draft[data-step='1'] .text").inner_text()
    assert shown == HOSTILE and view.page.title() == "refine report: out.jsonl"
    assert view.page.locator("details img").count() == 0
    assert _words(view.page, "#item-0", 2, "ins") == ["again"]
    assert view.outside == [] and view.errors == []
    view.close()


def test_a_missing_file_or_not_an_output_is_an_error_and_writes_nothing(
    view_outputs: ViewOutputs, tmp_path: Path
) -> None:
    page = tmp_path / "page.html"
    page.write_text("the page of an earlier report")
    missing = run_refine(
        ["report", str(tmp_path / "nope.jsonl"), "--html", str(page)], env=dict(os.environ)
    )
    dataset = write_rows(tmp_path / "data.jsonl", [{"id": "a", "text": "An input row."}])
    foreign = run_refine(["report", str(dataset), "--html", str(page)], env=dict(os.environ))
    same = run_refine(["report", str(dataset), "--html", str(dataset)], env=dict(os.environ))
    for done, words in (
        (missing, "file not found"),
        (foreign, "is this the --output file of `refine run`?"),
        (same, "is the output file itself"),
    ):
        assert done.returncode == 2, done.stdout
        assert "error:" in done.stderr and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    qa = str(view_outputs.qa)
    folder = run_refine(["report", qa, "--html", str(tmp_path)], env=dict(os.environ))
    assert folder.returncode == 2 and "Traceback" not in folder.stderr
    assert f"cannot write the page {tmp_path}" in folder.stderr, folder.stderr
    # nothing written: the earlier page is whole, and no temporary file is left beside it
    assert page.read_text() == "the page of an earlier report"
    assert sorted(tmp_path.iterdir()) == [dataset, page]
    assert json.loads(dataset.read_text()) == {"id": "a", "text": "An input row."}


def test_a_torn_last_line_is_left_out_and_said(view_outputs: ViewOutputs, tmp_path: Path) -> None:
    """A run still writing: its complete records are shown, the torn tail is named."""
    growing = tmp_path / "out.jsonl"
    growing.write_bytes(view_outputs.summarize.read_bytes() + b'{"id": "next", "sta')
    page = tmp_path / "page.html"
    assert write_report(growing, page) == Written(3, torn_tail=True)
    html = page.read_text("utf-8")
    assert 'id="torn-tail"' in html and html.count('<details class="item"') == 3


BIDI_ID = "\u202eevil-id"
BIDI_DRAFT = "Step one \u202eunclosed override"


@pytest.fixture
def bidi_output(fake_server: FakeOpenAI, prefect_api: PrefectServer, tmp_path: Path) -> Path:
    """A real generic run whose id starts with a right-to-left override and whose first draft
    leaves one open; the second draft adds a word after it."""
    return two_drafts_run(fake_server, tmp_path, BIDI_ID, [BIDI_DRAFT, BIDI_DRAFT + " inserted"])


def test_bidi_controls_in_the_data_stay_inside_their_own_piece(
    bidi_output: Path, browser: Any, tmp_path: Path
) -> None:
    """Every piece of data text is bidi-isolated, so an override in an id or a draft cannot
    reorder the header, cells or diff pieces after it; a whole header cell sorts."""
    page_path = tmp_path / "bidi.html"
    write_report(bidi_output, page_path)
    view = Page(browser, page_path)
    page = view.page
    page.locator("#item-0").evaluate("node => { node.open = true; }")
    isolated = [
        "#items-table tbody td",
        "#items-table tbody td bdi",
        "#item-0 > summary bdi",
        "#item-0 .draft[data-step='1'] .text span",
        "#item-0 .draft[data-step='2'] .text span",
        "#item-0 .draft[data-step='2'] .text ins",
    ]
    for selector in isolated:
        elements = page.locator(selector)
        assert elements.count() > 0, selector
        styles = elements.evaluate_all(
            "nodes => nodes.map(node => getComputedStyle(node).unicodeBidi)"
        )
        assert set(styles) == {"isolate"}, (selector, styles)
    assert page.locator("#item-0 > summary bdi").first.inner_text() == BIDI_ID
    assert _words(page, "#item-0", 2, "ins") == ["inserted"]
    # a click anywhere in a header cell sorts, not only on its label
    header = page.locator("#items-table th:nth-child(7)")
    box = header.bounding_box()
    label = header.locator("button").bounding_box()
    assert box is not None and label is not None and label["width"] >= box["width"] - 2
    page.mouse.click(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    assert header.get_attribute("aria-sort") == "ascending"
    assert view.outside == [] and view.errors == []
    view.close()


def test_report_says_a_torn_line_on_stderr_and_small_pages_in_kb(
    view_outputs: ViewOutputs, tmp_path: Path
) -> None:
    growing = tmp_path / "out.jsonl"
    growing.write_bytes(view_outputs.summarize.read_bytes() + b'{"id": "next", "sta')
    page = tmp_path / "page.html"
    done = run_refine(["report", str(growing), "--html", str(page)], env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("incomplete") == 1 and "left out" in done.stderr
    assert " KB)" in done.stdout and "0.0 MB" not in done.stdout
    assert page_size(999_999) == "1000.0 KB" and page_size(2_500_000) == "2.5 MB"
    assert page_size(40) == "0.1 KB"
