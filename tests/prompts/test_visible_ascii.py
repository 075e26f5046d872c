"""visible_text's ASCII path drops exactly what the Unicode rule drops."""

from __future__ import annotations

import unicodedata

from prompts.values import visible_text


def _by_the_rule(text: str) -> str:
    """The definition, character by character: no whitespace, no Cc or Cf character."""
    return "".join(
        c for c in text if not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf")
    )


def test_every_ascii_character_is_kept_or_dropped_as_the_unicode_rule_says() -> None:
    for code in range(128):
        char = chr(code)
        assert visible_text(f"a{char}b") == _by_the_rule(f"a{char}b"), hex(code)


def test_ascii_and_other_text_give_what_the_rule_gives() -> None:
    texts = [
        " The pump\twas\r\nrepaired.\x00\x1b[0m \x7f",
        "\t \n\x0b\x0c\x1c\x1d\x1e\x1f",
        "Le chat\u00a0est assis.\u200b\ufeff",
        "",
    ]
    for text in texts:
        assert visible_text(text) == _by_the_rule(text)
    assert visible_text(texts[1]) == ""
