"""The postprocess package: cleaners on real-looking answers, the registry, and default chains."""

from __future__ import annotations

import random

import pytest

import postprocess
from postprocess import (
    CleanerRegistry,
    build_chain,
    default_cleaners,
    extract_code_block,
    normalize_whitespace,
    strip,
    strip_code_fences,
    truncate_chars,
)
from prompts import TASK_KINDS
from refine.errors import ConfigError


def shout(text: str) -> str:
    """A user cleaner, imported by the registry as ``<this module>:shout``."""
    return text.upper() + "!"


def returns_none(text: str) -> None:
    """A broken user cleaner."""


NOT_CALLABLE = 42


def test_public_names_match_all() -> None:
    assert sorted(postprocess.__all__) == postprocess.__all__
    for name in postprocess.__all__:
        assert getattr(postprocess, name) is not None


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("Just prose, no fence.", "Just prose, no fence."),
        ("```\nHello there.\n```", "Hello there."),
        ("```python\nprint(1)\n\n\nprint(2)\n```", "print(1)\n\n\nprint(2)"),
        ("\n  ```markdown \n# Title\n```  \n\n", "# Title"),
        ("~~~text\nwavy\n~~~", "wavy"),
        ("````md\n```python\nx = 1\n```\n````", "```python\nx = 1\n```"),
        ("```python\ndef f():\n    return 1", "def f():\n    return 1"),  # cut off: unclosed
        ("```\n```", ""),
        ("Here it is:\n```\ncode\n```", "Here it is:\n```\ncode\n```"),
        ("```\na\n```\nand\n```\nb\n```", "```\na\n```\nand\n```\nb\n```"),
        ("```inline``` then text", "```inline``` then text"),
        ("", ""),
    ],
)
def test_strip_code_fences(answer: str, cleaned: str) -> None:
    assert strip_code_fences(answer) == cleaned


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            "Sure! Here is the function:\n```python\ndef add(a, b):\n    return a + b\n```\n"
            "It adds two numbers.\n```python\nprint(add(1, 2))\n```",
            "def add(a, b):\n    return a + b",
        ),
        ("def bare():\n    pass", "def bare():\n    pass"),  # no fence: the answer is the code
        ("Text first\n```js\nlet x = 1;", "let x = 1;"),  # unclosed: runs to the end
        ("1. Step one:\n   ```sh\n   ls -la\n     cd x\n   ```\ndone", "ls -la\n  cd x"),
        ("```python\nprint(1)\n```", "print(1)"),
    ],
)
def test_extract_code_block(answer: str, code: str) -> None:
    assert extract_code_block(answer) == code


def test_normalize_whitespace() -> None:
    messy = "Title  \r\n\r\n\r\n\tword\t\tword   word \n  - nested   item\n\n\n\n\nend"
    assert normalize_whitespace(messy) == "Title\n\n\tword word word\n  - nested item\n\nend"
    assert normalize_whitespace("a \u00a0 b") == "a b"
    assert strip("  \n text \t\n") == "text"


def test_truncate_prefers_a_word_boundary_in_the_last_fifth() -> None:
    cut = truncate_chars(20)
    assert cut("short") == "short"
    assert cut("x" * 20) == "x" * 20
    assert cut("The quick brown fox jumps over the lazy dog") == "The quick brown fox"
    assert cut("one two three fourfivesixseven") == "one two three fourfi"  # no space in last 20%
    assert cut("abcdefghijklmnopqrs tuvwxyz") == "abcdefghijklmnopqrs"
    assert cut.__name__ == "truncate_chars_20"


def test_truncate_never_exceeds_the_limit() -> None:
    rng = random.Random(7)
    alphabet = "ab \n\t"
    for _ in range(2000):
        limit = rng.randint(1, 60)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        cut = truncate_chars(limit)(text)
        assert len(cut) <= limit
        assert text.startswith(cut)
        if len(text) <= limit:
            assert cut == text


@pytest.mark.parametrize("limit", [0, -3, True, 2.5])
def test_truncate_refuses_bad_limits(limit: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        truncate_chars(limit)  # type: ignore[arg-type]


def test_registry_builds_chains_from_names_and_arguments() -> None:
    chain = build_chain(["strip_code_fences", "normalize_whitespace", "strip", "truncate_chars:11"])
    assert chain.specs == (
        "strip_code_fences",
        "normalize_whitespace",
        "strip",
        "truncate_chars:11",
    )
    assert chain("```\n  Hello    brave new   world  \n```") == "Hello brave"
    assert build_chain([])("  unchanged ") == "  unchanged "


def test_registry_imports_user_cleaners() -> None:
    chain = default_cleaners().build_chain(["strip", f"{__name__}:shout"])
    assert chain("  done ") == "DONE!"


def test_default_registries_are_fresh_copies() -> None:
    mine = default_cleaners()
    mine.register("shout", lambda: shout)
    assert "shout" in mine and mine.resolve("shout")("a") == "A!"
    assert "shout" not in default_cleaners()
    copied = mine.copy()
    copied.register("other", lambda: strip)
    assert "other" not in mine
    assert default_cleaners().names() == [
        "drop_lines",
        "extract_code_block",
        "extract_json",
        "normalize_whitespace",
        "reject_empty",
        "reject_if",
        "reject_longer",
        "reject_unless",
        "strip",
        "strip_chatter",
        "strip_code_fences",
        "strip_think",
        "truncate_chars",
        "truncate_sentences",
        "truncate_tokens",
    ]


def test_unknown_cleaner_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        build_chain(["strip", "stirp"])
    message = str(caught.value)
    assert "unknown cleaner 'stirp'" in message
    for name in default_cleaners().names():
        assert name in message
    with pytest.raises(ConfigError, match="unknown cleaner 'truncate'"):
        build_chain(["truncate:10"])


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("strip:3", "strip takes no argument"),
        (
            "truncate_chars",
            r"'truncate_chars' needs an integer argument \('truncate_chars:1000', or limit in a",
        ),
        ("truncate_chars:lots", "must be an integer"),
        ("truncate_chars:0", "positive integer"),
        ("no_such_module_xyz.sub:clean", "cannot import 'no_such_module_xyz.sub'"),
        (f"{__name__}:missing", "has no 'missing'"),
        (f"{__name__}:NOT_CALLABLE", "is a int, not a function"),
    ],
)
def test_bad_specs_fail_when_the_chain_is_built(spec: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        build_chain([spec])


def test_a_cleaner_that_breaks_the_contract_is_named() -> None:
    chain = build_chain([f"{__name__}:returns_none"])
    with pytest.raises(ConfigError, match="returns_none' returned NoneType"):
        chain("text")


def test_a_string_is_not_a_list_of_specs() -> None:
    with pytest.raises(ConfigError, match="list of specs"):
        build_chain("strip")


def test_registry_names_must_be_identifiers() -> None:
    with pytest.raises(ConfigError, match="identifiers"):
        CleanerRegistry({"my.cleaner": lambda: strip})


def test_default_chains() -> None:
    """Each task kind's default chain (the task table in prompts.tasks) built and applied."""
    prose_kind, code_kind = TASK_KINDS["summarize"], TASK_KINDS["codegen"]
    chatter = ["strip_chatter", "strip_code_fences", "strip_chatter", "strip"]
    assert prose_kind.default_cleaners(None) == chatter
    assert prose_kind.default_cleaners(500) == [*chatter, "truncate_chars:500"]
    for name in ("translate", "qa"):
        assert TASK_KINDS[name].default_cleaners(None) == chatter
    assert TASK_KINDS["generic"].default_cleaners(None) == ["strip_code_fences", "strip"]
    translate = build_chain(TASK_KINDS["translate"].default_cleaners(None))
    assert translate('Voici la traduction française : "Le chat dort."') == "Le chat dort."
    assert code_kind.default_cleaners(500) == ["extract_code_block", "strip"]
    with pytest.raises(ConfigError, match="max_chars"):
        prose_kind.default_cleaners(0)

    fenced = build_chain(prose_kind.default_cleaners(None))
    assert fenced("Sure! Here is the summary:\n\n```text\nReal.\n```") == "Real."
    assert fenced("Sure! Here is the summary:\n```\n```") == ""  # empty: a problem, never ok
    assert fenced("```\nReal.\n```\nLet me know if you need anything else.") == "Real."
    prose = build_chain(prose_kind.default_cleaners(10))
    assert prose("```\n  A summary that runs long.\n```\n") == "A summary"
    code = build_chain(code_kind.default_cleaners(None))
    answer = "Sure, here you go:\n\n```python\n\ndef f():\n    return 1\n```\nAnything else?"
    assert code(answer) == "def f():\n    return 1"
