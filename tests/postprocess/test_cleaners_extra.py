"""Cleaners for chatty answers, filters that reject drafts, and specs with string arguments."""

from __future__ import annotations

import re

import pytest

from postprocess.chatter_cleaners import (
    drop_lines,
    extract_json,
    strip_chatter,
    strip_think,
    truncate_sentences,
    truncate_tokens,
)
from postprocess.cleaner_registry import (
    INTEGER_ARGUMENT,
    REGEX_ARGUMENT,
    CleanerRegistry,
    build_chain,
    default_cleaners,
)
from postprocess.filters import (
    DraftRejected,
    reject_empty,
    reject_if,
    reject_longer,
    reject_unless,
)
from refine.errors import ConfigError


def sign(text: str) -> str:
    """A user cleaner, imported by the registry as ``<this module>:sign``."""
    return text + "\n-- the editors"


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        (
            "Here is the improved version:\n\nThe committee approved the budget on Tuesday.\n\n"
            "Let me know if you need anything else.",
            "The committee approved the budget on Tuesday.",
        ),
        (
            "Sure! Here's the summary:\nRevenue rose 12% while costs held flat.\n\n"
            "I hope this helps!",
            "Revenue rose 12% while costs held flat.",
        ),
        (
            "Improved draft:\nOur product saves teams two hours a day.",
            "Our product saves teams two hours a day.",
        ),
        ("**Revised summary (58 words):**\n\nThe study found...", "The study found..."),
        (
            "Certainly!\n\nBelow is the corrected code:\n```python\nx = 1\n```\n"
            "Feel free to ask if you want more changes.\nIs there anything else I can help with?",
            "```python\nx = 1\n```",
        ),
        (
            "  First paragraph.\n\n  Second paragraph.\n\nWould you like me to make it shorter?",
            "  First paragraph.\n\n  Second paragraph.",
        ),
        ("Here is the improved version:", ""),  # all chatter: nothing is left
        # Real content is left alone:
        ("New York:\nA city that never sleeps.", "New York:\nA city that never sleeps."),
        ("Final thoughts:\nShip it.", "Final thoughts:\nShip it."),
        (
            "Here is the improved version: the cat sat.",
            "Here is the improved version: the cat sat.",
        ),
        ("Okay.\nThat is what she said.", "Okay.\nThat is what she said."),
        ('"Would you like me to stay?" she asked.', '"Would you like me to stay?" she asked.'),
        (
            "Let me know if you need anything else.\nThanks, Ana",
            "Let me know if you need anything else.\nThanks, Ana",
        ),
        ("\n\n", "\n\n"),
    ],
)
def test_strip_chatter(answer: str, cleaned: str) -> None:
    assert strip_chatter(answer) == cleaned


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [  # issue 14: a lead-in and the whole answer quoted, on one line or two, in any language
        ('Voici la traduction française : "Le chat dort."', "Le chat dort."),
        ("Voici la traduction française :\n« Le chat dort. »", "Le chat dort."),
        ('Here is the translation: "The cat sleeps."', "The cat sleeps."),
        ('Sure! Here\'s the summary: "Rain fell."', "Rain fell."),
        ("Hier ist die Übersetzung: „Die Katze schläft.“", "Die Katze schläft."),
        ('La traducción: "El gato duerme."', "El gato duerme."),
        ('**Translation:** "Le chat dort."', "Le chat dort."),
        # left alone: not one quoted span, or no lead-in
        ('Voici : "un" et "deux".', 'Voici : "un" et "deux".'),
        ('Il a dit : "Bonjour."', 'Il a dit : "Bonjour."'),
        ("Note: the cat sleeps.", "Note: the cat sleeps."),
        ('"Le chat dort."', '"Le chat dort."'),
    ],
)
def test_strip_chatter_takes_a_quoted_answer_out_of_its_lead_in(answer: str, cleaned: str) -> None:
    assert strip_chatter(answer) == cleaned


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("<think>\nThe user wants a title.\n</think>\n\nA Quiet Harbour", "A Quiet Harbour"),
        ("<think>first</think>One <think>second</think>two", "One two"),
        ("<think>\nLet me count the words: one, two, three", ""),  # cut off while reasoning
        ("   <think>unclosed", ""),
        (
            "Okay, the user wants a haiku.\n</think>\n\nOld pond, a frog jumps",
            "Old pond, a frog jumps",
        ),
        ("No reasoning here.", "No reasoning here."),
        ("Use the <thinking> tag sparingly.", "Use the <thinking> tag sparingly."),
    ],
)
def test_strip_think(answer: str, cleaned: str) -> None:
    assert strip_think(answer) == cleaned


@pytest.mark.parametrize(
    ("answer", "json_text"),
    [
        (
            'Here is the JSON you asked for:\n```json\n{"title": "Q3 {draft}", "tags": ["a", "b"]}'
            "\n```\nIt has two fields.",
            '{"title": "Q3 {draft}", "tags": ["a", "b"]}',
        ),
        (
            '{"outer": {"inner": [1, {"deep": true}]}} and {"second": 2}',
            '{"outer": {"inner": [1, {"deep": true}]}}',
        ),
        ("The {placeholder} is not JSON, but this is: [1, 2.5, null]", "[1, 2.5, null]"),
        ('Result: {"a": 1', 'Result: {"a": 1'),  # incomplete: unchanged
        ("no json at all", "no json at all"),
        ("[" * 3000, "[" * 3000),  # too deep to decode: unchanged, no crash
    ],
)
def test_extract_json(answer: str, json_text: str) -> None:
    assert extract_json(answer) == json_text


@pytest.mark.parametrize(
    ("count", "text", "kept"),
    [
        (
            2,
            "The river rose. Farmers moved their herds! Was it enough? Nobody knew.",
            "The river rose. Farmers moved their herds!",
        ),
        (
            1,
            "Dr. Ruiz met Mr. Chan at 3.30 p.m. on Friday. They talked.",
            "Dr. Ruiz met Mr. Chan at 3.30 p.m.",
        ),
        (
            2,
            "Use a pan (e.g. cast iron). Heat it. Add oil.",
            "Use a pan (e.g. cast iron). Heat it.",
        ),
        (2, 'She said "Stop." Then she ran. Far away.', 'She said "Stop." Then she ran.'),
        (2, "Quarterly Report\n\nSales grew. Costs fell.", "Quarterly Report\n\nSales grew."),
        (3, "One. Two.", "One. Two."),
        (1, "  Leading space kept.  Next.", "  Leading space kept."),
    ],
)
def test_truncate_sentences(count: int, text: str, kept: str) -> None:
    assert truncate_sentences(count)(text) == kept


def test_truncate_tokens_counts_words_and_keeps_spacing() -> None:
    cut = truncate_tokens(4)
    assert cut("  The quick\tbrown\n\nfox jumps over") == "  The quick\tbrown\n\nfox"
    assert cut("three short words") == "three short words"
    assert cut("") == ""
    assert cut.__name__ == "truncate_tokens_4"


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_counting_cleaners_refuse_bad_counts(bad: object) -> None:
    for factory in (truncate_sentences, truncate_tokens):
        with pytest.raises(ConfigError, match="positive integer count"):
            factory(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive integer limit"):
        reject_longer(bad)  # type: ignore[arg-type]


def test_drop_lines() -> None:
    notes = drop_lines(re.compile(r"^(Note|TODO):"))
    text = "Title\r\nNote: internal\r\nBody line with Note: inside\r\nTODO: fix\r\nEnd"
    assert notes(text) == "Title\r\nBody line with Note: inside\r\nEnd"
    assert drop_lines(re.compile(r"^\s*$"))("a\n\n  \nb\n") == "a\nb"
    assert notes("nothing to drop") == "nothing to drop"


def test_filters_pass_good_drafts_unchanged() -> None:
    draft = "  A fine answer.  "
    assert reject_empty(draft) == draft
    assert reject_if(re.compile("As an AI"))(draft) == draft
    assert reject_unless(re.compile(r"\.\s*$"))(draft) == draft
    assert reject_longer(18)(draft) == draft


@pytest.mark.parametrize(
    ("reject", "draft", "reason"),
    [
        (reject_empty, " \n\t", "draft rejected: it is empty"),
        (
            reject_if(re.compile("As an AI")),
            "As an AI language model, I cannot rewrite this.",
            "draft rejected: it matches the forbidden pattern 'As an AI'",
        ),
        (
            reject_unless(re.compile(r"^\{")),
            "Sure, here is the JSON",
            "draft rejected: it does not match the required pattern '^\\\\{'",
        ),
        (
            reject_longer(10),
            "Eleven char",
            "draft rejected: it is 11 characters long, over the limit of 10",
        ),
    ],
)
def test_filters_reject_with_readable_reasons(reject: object, draft: str, reason: str) -> None:
    with pytest.raises(DraftRejected) as caught:
        reject(draft)  # type: ignore[operator]
    assert caught.value.reason == reason
    assert str(caught.value) == reason
    assert caught.value.text == draft


def test_rejection_propagates_through_a_built_chain() -> None:
    chain = build_chain(["strip_think", "strip", "reject_if:(?i)^as an ai", "truncate_chars:20"])
    assert chain("<think>ok</think> A short answer that runs on.") == "A short answer that"
    with pytest.raises(DraftRejected) as caught:
        chain("<think>refuse</think>\nAs an AI, I cannot help.")
    assert caught.value.reason == "draft rejected: it matches the forbidden pattern '(?i)^as an ai'"
    assert caught.value.text == "As an AI, I cannot help."  # as the filter saw it


def test_specs_take_string_arguments_split_at_the_first_colon() -> None:
    chain = build_chain(["drop_lines:^(Note|Source): ", "strip", "truncate_sentences:1"])
    answer = "Note: draft 2\nThe plan works. It is cheap.\nSource: internal"
    assert chain(answer) == "The plan works."
    assert build_chain(["truncate_chars:2000"])("kept") == "kept"
    assert build_chain(["truncate_tokens: 2 "])("one two three") == "one two"
    assert build_chain(["reject_unless:^\\{", "extract_json"])('{"a": 1} ok') == '{"a": 1}'


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            "drop_lines:([unclosed",
            r"'drop_lines:\(\[unclosed': '\(\[unclosed' is not a valid regular",
        ),
        ("reject_if:", "the pattern is empty"),
        (
            "reject_unless",
            r"needs a regular expression argument \('reject_unless:\^Note:', or pattern in a table",
        ),
        ("truncate_sentences:three", "'truncate_sentences:three': the argument must be an integer"),
        ("truncate_tokens:0", "'truncate_tokens:0': truncate_tokens needs a positive integer"),
        ("reject_longer:-5", "reject_longer needs a positive integer limit, got -5"),
        ("strip_think:yes", "strip_think takes no argument"),
    ],
)
def test_bad_arguments_fail_when_the_chain_is_built(spec: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        build_chain([spec])


def test_unknown_names_list_every_cleaner_and_filter() -> None:
    with pytest.raises(ConfigError) as caught:
        build_chain(["strip_thinking"])
    message = str(caught.value)
    assert message.startswith("unknown cleaner 'strip_thinking'; known cleaners: drop_lines, ")
    for name in ("strip_chatter", "extract_json", "reject_if", "reject_longer", "truncate_tokens"):
        assert name in message


def test_user_cleaners_are_still_imported_and_registered_names_win() -> None:
    assert build_chain(["strip", f"{__name__}:sign"])(" Fin ") == "Fin\n-- the editors"
    registry = default_cleaners()
    registry.register("tests", lambda: sign)  # a name that is also a package
    assert registry.build_chain(["tests"])("x") == "x\n-- the editors"
    with pytest.raises(ConfigError, match="tests takes no argument"):
        registry.build_chain([f"tests:{__name__}"])


def test_registered_arguments_survive_copies_and_are_checked_on_registration() -> None:
    registry = CleanerRegistry({"cut": truncate_tokens}, {"cut": INTEGER_ARGUMENT})
    copied = registry.copy()
    copied.register("drop", drop_lines, REGEX_ARGUMENT)
    assert copied.build_chain(["drop:^#", "cut:2"])("# heading\na b c") == "a b"
    assert "drop" not in registry
    with pytest.raises(ConfigError, match="'cut2': its factory must take one argument"):
        registry.register("cut2", lambda: sign, INTEGER_ARGUMENT)
    registry.register("cut3", truncate_tokens)  # no shorthand: its parameter comes in a table
    assert registry.build_chain([{"name": "cut3", "count": 1}])("a b") == "a"
    with pytest.raises(ConfigError, match="cut3 takes no argument; its parameters go in a table"):
        registry.build_chain(["cut3:1"])
    with pytest.raises(ConfigError, match="'cut3': missing parameter 'count'"):
        registry.build_chain(["cut3"])
