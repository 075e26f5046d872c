"""Rewards on real inputs with known figures, the judge-score parser and reward specs.

The ROUGE, BLEU and chrF figures come from the libraries' own tests and README (rouge-score's
rouge_scorer_test.py and README pair, sacrebleu's test_sentence_bleu.py, test_bleu.py and
test_chrf.py), divided by 100 where sacrebleu reports 0..100, at the same tolerance those tests
use. The QA figures are computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import sacrebleu

from postprocess.reward_registry import (
    NamedReward,
    RewardRegistry,
    build_rewards,
    default_rewards,
)
from postprocess.rewards import (
    RewardDraft,
    RewardUnavailable,
    exact_match,
    item_references,
    loglik,
    parse_judge_score,
    token_f1,
)
from refine.errors import ConfigError

BUILT_IN = ["bleu", "chrf", "exact_match", "loglik", "rouge_l", "token_f1"]


def words_reward(draft: RewardDraft, row: Mapping[str, Any]) -> float:
    """A user reward, imported as ``<this module>:words_reward``: 1.0 at 3+ words."""
    if "topic" not in row:
        raise RewardUnavailable("the item has no topic")
    return min(len(draft.text.split()) / 3, 1.0)


def returns_text(draft: RewardDraft, row: Mapping[str, Any]) -> str:
    """A user reward that breaks the contract."""
    return "high"


def old_order(item: Mapping[str, Any], draft: RewardDraft) -> float:
    """A user reward written for the old ``(row, draft)`` contract."""
    return float(bool(item))


def old_order_unannotated(row, draft):  # type: ignore[no-untyped-def]
    """The old order, told by the first parameter's name alone."""
    return 1.0


def old_order_by_annotation(example: dict[str, Any], answer: RewardDraft) -> float:
    """The old order, told by the annotations alone."""
    return 1.0


def new_order_odd_names(d, r):  # type: ignore[no-untyped-def]
    """Names that say nothing: taken as (draft, row)."""
    return float(len(d.text) + len(r))


NOT_CALLABLE = 7


def score(spec: str | Mapping[str, Any], draft: str, reference: object) -> float:
    (reward,) = build_rewards([spec])
    return reward(RewardDraft(draft), {"text": "source", "reference": reference})


# rouge-score: README pair (LCS "the quick brown jump the" = 5 of 9 and 8 tokens: 2*5/17),
# testRougeLNonConsecutive and testRougeAllMulti (the best of several references).
@pytest.mark.parametrize(
    ("draft", "reference", "expected"),
    [
        (
            "The quick brown dog jumps on the log.",
            "The quick brown fox jumps over the lazy dog",
            10 / 17,
        ),
        ("testing two", "testing one two", 4 / 5),
        ("text first", ["first text", "first something"], 0.5),
        ("", "testing one two", 0.0),
    ],
)
def test_rouge_l_matches_rouge_score_figures(
    draft: str, reference: object, expected: float
) -> None:
    assert score("rouge_l", draft, reference) == pytest.approx(expected)


def test_rouge_l_stems_unless_told_not_to() -> None:
    assert score("rouge_l", "run dog", "running dogs") == pytest.approx(1.0)
    assert score({"name": "rouge_l", "use_stemmer": False}, "run dog", "running dogs") == 0.0


# sacrebleu's test_sentence_bleu.py (issue #98 and #141) and test_bleu.py effective-order cases.
BLEU_REF = "producţia de zahăr brut se exprimă în zahăr alb;"
BLEU_SYS = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"


@pytest.mark.parametrize(
    ("spec", "draft", "reference", "expected"),
    [
        ("bleu", BLEU_SYS, BLEU_REF, 0.08493),
        ({"name": "bleu", "tokenize": "char"}, BLEU_SYS, BLEU_REF, 0.408759),
        ({"name": "bleu", "tokenize": "char", "lowercase": True}, BLEU_SYS, BLEU_REF, 0.420267),
        ("bleu", "this is a cat", "okay thanks", 0.0),
        ("bleu", "a test", "a test", 1.0),
        ("bleu", "The dog bit the man.", ["The dog had bit the man.", "The dog bit the man."], 1.0),
    ],
)
def test_bleu_matches_sacrebleu_figures(
    spec: str | dict[str, Any], draft: str, reference: object, expected: float
) -> None:
    assert score(spec, draft, reference) == pytest.approx(expected, abs=1e-5)


# sacrebleu's test_chrf.py. Its sentence-level figures were made with eps_smoothing=True, where
# our chrf keeps sacrebleu's default (False); the two differ by under 4e-4 on 0..100, so those
# are checked to 1e-5 here. Its effective-order cases use the default smoothing (and beta=3,
# which cannot matter: precision equals recall in each), so they hold exactly.
CZECH = [
    (
        "Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
        "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.",
        0.3914078509,
    ),
    (
        "Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
        "A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.",
        0.3122557079,
    ),
    (
        "Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
        "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.",
        0.5715704367,
    ),
]


@pytest.mark.parametrize(("draft", "reference", "expected"), CZECH)
def test_chrf_matches_sacrebleu_sentence_figures(
    draft: str, reference: str, expected: float
) -> None:
    assert score("chrf", draft, reference) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("draft", "reference", "expected"),
    [
        ("a", "a", 1.0),
        ("a b c", "abc", 1.0),
        ("aa", "ab", 0.25),
        ("", "reference", 0.0),
        (
            "Niemand hat die Absicht, eine Mauer zu errichten",
            ["Das ist es nicht.", "Niemand hat die Absicht, eine Mauer zu errichten"],
            1.0,
        ),
    ],
)
def test_chrf_matches_sacrebleu_exact_figures(
    draft: str, reference: object, expected: float
) -> None:
    assert score("chrf", draft, reference) == pytest.approx(expected, abs=1e-12)


def test_chrf_plus_plus_counts_words_too() -> None:
    draft, reference = "Lapali po dechu, jejich životy skončily.", "Lapali po dechu a pak skončil."
    chrf_pp = sacrebleu.sentence_chrf(draft, [reference], word_order=2).score / 100
    assert score({"name": "chrf", "word_order": 2}, draft, reference) == pytest.approx(chrf_pp)
    assert chrf_pp != pytest.approx(score("chrf", draft, reference))


@pytest.mark.parametrize(
    ("draft", "reference", "em", "f1"),
    [
        ("the Eiffel Tower", "Eiffel tower", 1.0, 1.0),
        ("Paris France", "Paris", 0.0, 2 / 3),
        ("the cat sat", "a dog sat!", 0.0, 0.5),
        ("Eiffel Tower, Paris", ["Louvre", "eiffel tower"], 0.0, 0.8),
        ("Paris", ["Lyon", "paris."], 1.0, 1.0),
        ("Berlin", "Paris", 0.0, 0.0),
        ("", "Paris", 0.0, 0.0),
        ("The", "an", 1.0, 1.0),  # both normalise to nothing: SQuAD counts that as agreement
    ],
)
def test_exact_match_and_token_f1(draft: str, reference: object, em: float, f1: float) -> None:
    row, answer = {"reference": reference}, RewardDraft(draft)
    assert exact_match(answer, row) == em
    assert token_f1(answer, row) == pytest.approx(f1)
    assert score("exact_match", draft, reference) == em


def test_loglik_is_the_mean_token_logprob_and_needs_no_reference() -> None:
    (reward,) = build_rewards(["loglik"])
    assert reward(RewardDraft("Hi there", (-0.5, -1.5)), {}) == -1.0
    assert loglik(RewardDraft("x", (-0.25,)), {}) == -0.25


@pytest.mark.parametrize(
    ("logprobs", "reason"),
    [
        (None, "the endpoint returned no logprobs"),
        ((), "the draft has no token logprobs"),
        ((-0.5, math.nan), "the logprobs include a value that is not finite"),
    ],
)
def test_loglik_unavailable(logprobs: tuple[float, ...] | None, reason: str) -> None:
    (reward,) = build_rewards(["loglik"])
    with pytest.raises(RewardUnavailable) as caught:
        reward(RewardDraft("x", logprobs), {"reference": "x"})
    assert caught.value.reason == reason
    assert caught.value.reward == "loglik"
    assert str(caught.value) == f"reward loglik unavailable: {reason}"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"text": "t"}, "the item has no reference"),
        ({"reference": None}, "the item has no reference"),
        ({"reference": "  "}, "the reference is empty"),
        ({"reference": ["", " \n"]}, "the reference is empty"),
        ({"reference": 42}, "the reference must be a string or a list of strings, got 42"),
        ({"reference": ["a", 1]}, "the reference must be a string or a list of strings"),
    ],
)
@pytest.mark.parametrize("name", ["rouge_l", "bleu", "chrf", "exact_match", "token_f1"])
def test_reference_rewards_are_unavailable_without_a_reference(
    name: str, row: dict[str, Any], reason: str
) -> None:
    (reward,) = build_rewards([name])
    with pytest.raises(RewardUnavailable, match=f"^reward {name} unavailable: {reason}"):
        reward(RewardDraft("Paris"), row)


def test_item_references_drops_blank_ones() -> None:
    assert item_references({"reference": "Paris"}) == ["Paris"]
    assert item_references({"reference": ("Paris", "", "Paree")}) == ["Paris", "Paree"]


@pytest.mark.parametrize(
    ("answer", "scale_max", "expected"),
    [
        ("Score: 7/10", 10, 0.7),
        ("The draft is clear. 7 out of 10", 10, 0.7),
        ("**8**", 10, 0.8),
        ("Rating: 4.5", 10, 0.45),
        ("Rating: 4.5", 5, 0.9),
        ("8", 10, 0.8),
        ("**Score:** 6\n", 10, 0.6),
        ("Score: **9**/10", 10, 0.9),
        ("Final score (1-10): 3", 10, 0.3),
        ("My grade is 4 out of 5.", 10, 0.8),  # an explicit scale wins over scale_max
        ("Step 1/3: check facts. Step 2/3: check style.\nScore: 5", 10, 0.5),
        ("First I thought 3/10, but on reflection 6/10.", 10, 0.6),  # the conclusion counts
        ("Score: 0/10", 10, 0.0),
        ("Score: 3e0/5", 10, 0.6),  # an exponent is part of the number
        ("Score: +7/10", 10, 0.7),
        ("Score: 7. The summary is faithful.", 10, 0.7),
    ],
)
def test_parse_judge_score(answer: str, scale_max: float, expected: float) -> None:
    assert parse_judge_score(answer, scale_max) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Looks good to me!", "no score found in the judge's answer 'Looks good to me!'"),
        ("", "no score found"),
        ("Score: 12", "the judge's score 12 is outside 0..10"),
        ("Score: 11/10", "the judge's score 11 is outside 0..10"),
        ("Rating: -2", "the judge's score -2 is outside 0..10"),
        ("Score: 3/0", "the judge's score 3 is outside 0..0"),
        # not a finite number in range: read whole, never as its first digit ("1e999" is no 1)
        ("Score: 1e999/10", "the judge's score 1e999 is not a finite number"),
        ("1e999/10", "the judge's score 1e999 is not a finite number"),
        ("Score: NaN/10", "the judge's score NaN is not a finite number"),
        ("NaN/10", "the judge's score NaN is not a finite number"),
        ("Score: Infinity", "the judge's score Infinity is not a finite number"),
        ("Rating: -inf/10", "the judge's score -inf is not a finite number"),
        ("Score: 5/1e999", "the judge's score 5/1e999 is not a finite number"),
        ("11/10", "the judge's score 11 is outside 0..10"),
        ("Score: -3/10", "the judge's score -3 is outside 0..10"),
        ("Score: 2e1/10", "the judge's score 2e1 is outside 0..10"),
        ("Score: 1,5/10", "no score found"),  # a decimal comma is neither 1/10 nor 5/10
        ("Score: 7.5.3", "no score found"),
    ],
)
def test_parse_judge_score_unavailable(answer: str, reason: str) -> None:
    with pytest.raises(RewardUnavailable, match="^" + reason.replace(".", r"\.")):
        parse_judge_score(answer)


@pytest.mark.parametrize("scale_max", [0, -5, True])
def test_parse_judge_score_needs_a_positive_scale(scale_max: float) -> None:
    with pytest.raises(ConfigError, match="scale_max must be a positive number"):
        parse_judge_score("Score: 5", scale_max)


def test_unknown_reward_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as caught:
        build_rewards(["rouge_l", "rougel"])
    message = str(caught.value)
    assert "unknown reward 'rougel'" in message
    assert f"known rewards: {', '.join(BUILT_IN)}" in message
    assert "'package.module:function'" in message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "chrf", "order": 2},
            "reward 'chrf': unknown parameter 'order'; accepted parameters: lowercase, word_order",
        ),
        (
            {"name": "exact_match", "normalize": False},
            "reward 'exact_match': unknown parameter 'normalize'; accepted parameters: none",
        ),
        (
            {"name": "chrf", "word_order": "2"},
            "reward chrf: word_order must be a whole number, got '2'",
        ),
        (
            {"name": "chrf", "word_order": True},
            "reward chrf: word_order must be a whole number, got True",
        ),
        ({"name": "chrf", "word_order": -1}, "reward chrf: word_order must be 0 or more"),
        (
            {"name": "rouge_l", "use_stemmer": "yes"},
            "reward rouge_l: use_stemmer must be true or false",
        ),
        ({"name": "bleu", "tokenize": "words"}, "reward bleu: unknown tokenize 'words'; known:"),
        ({"name": "bleu", "lowercase": 1}, "reward bleu: lowercase must be true or false, got 1"),
        ({"tokenize": "13a"}, "a reward table needs a 'name' key naming the reward"),
        (3, "a reward is a name or a table with a 'name' key, got 3"),
        (
            {"name": f"{__name__}:words_reward", "weight": 2},
            "is a user reward and takes no parameters, got weight",
        ),
        (
            "tests.no_such_module:fn",
            "reward 'tests.no_such_module:fn': cannot import 'tests.no_such_module'",
        ),
        (f"{__name__}:missing", f"module '{__name__}' has no 'missing'"),
        (f"{__name__}:NOT_CALLABLE", "is a int, not a function"),
    ],
)
def test_bad_specs_fail_at_config_time(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_rewards([spec])
    assert message in str(caught.value)


def test_specs_must_be_a_list_without_repeats() -> None:
    with pytest.raises(ConfigError, match="rewards must be a list of specs, got 'bleu'"):
        build_rewards("bleu")
    with pytest.raises(ConfigError, match=r"listed more than once: chrf\(word_order=2\)"):
        build_rewards(
            ["chrf", {"name": "chrf", "word_order": 2}, {"name": "chrf", "word_order": 2}]
        )


def test_labels_name_the_parameters() -> None:
    labels = [r.label for r in build_rewards(["bleu", {"name": "chrf", "word_order": 2}])]
    assert labels == ["bleu", "chrf(word_order=2)"]


def test_user_reward_by_module_path() -> None:
    (reward,) = build_rewards([f"{__name__}:words_reward"])
    assert reward.label == f"{__name__}:words_reward"
    assert reward(RewardDraft("Cats purr loudly."), {"topic": "cats"}) == 1.0
    assert reward(RewardDraft("Cats"), {"topic": "cats"}) == pytest.approx(1 / 3)
    with pytest.raises(RewardUnavailable) as caught:
        reward(RewardDraft("Cats"), {})
    assert str(caught.value) == (
        f"reward {__name__}:words_reward unavailable: the item has no topic"
    )


@pytest.mark.parametrize("value", ["high", None, True, math.nan, math.inf])
def test_a_reward_must_return_a_finite_number(value: object) -> None:
    reward = NamedReward("odd", lambda draft, row: value)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="reward 'odd' returned .*must return a finite number"):
        reward(RewardDraft("x"), {})
    (broken,) = build_rewards([f"{__name__}:returns_text"])
    with pytest.raises(ConfigError, match="returned 'high'"):
        broken(RewardDraft("x"), {})


def test_registries_are_fresh_per_run() -> None:
    first, second = default_rewards(), default_rewards()
    first.register("length", lambda: lambda draft, row: float(len(draft.text)))
    assert "length" in first and "length" not in second
    assert second.names() == BUILT_IN
    (reward,) = build_rewards(["length"], first)
    assert reward(RewardDraft("four"), {}) == 4.0
    copied = first.copy()
    copied.register("other", lambda: loglik)
    assert "other" not in first


def test_register_needs_an_identifier() -> None:
    with pytest.raises(ConfigError, match="reward names must be identifiers, got 'test-pass'"):
        RewardRegistry().register("test-pass", lambda: loglik)


def test_building_rouge_l_leaves_the_root_logger_alone() -> None:
    import subprocess
    import sys

    code = (
        "import logging; from postprocess.reward_registry import build_rewards; "
        "build_rewards(['rouge_l']); print(len(logging.getLogger().handlers))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0", done.stderr  # nothing configured logging behind our back


@pytest.mark.parametrize(
    ("function", "signature"),
    [
        ("old_order", "(item: 'Mapping[str, Any]', draft: 'RewardDraft') -> 'float'"),
        ("old_order_unannotated", "(row, draft)"),
        ("old_order_by_annotation", "(example: 'dict[str, Any]', answer: 'RewardDraft')"),
    ],
)
def test_a_user_reward_in_the_old_row_draft_order_is_refused(function: str, signature: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_rewards([f"{__name__}:{function}"])
    message = str(caught.value)
    assert message.startswith(f"reward '{__name__}:{function}': {function}{signature}")
    assert message.endswith(
        "takes the row first, but the reward contract changed to (draft, row): the draft judged "
        "first, the row (its context) second, as validators take them; swap its parameters"
    )


def test_a_registered_factory_in_the_old_order_is_refused_and_the_new_order_is_kept() -> None:
    registry = default_rewards()
    registry.register("swapped", lambda: lambda item, draft: 1.0)
    with pytest.raises(ConfigError, match=r"^reward 'swapped': <lambda>\(item, draft\) takes the"):
        build_rewards(["swapped"], registry)
    (reward,) = build_rewards([f"{__name__}:new_order_odd_names"])
    assert reward(RewardDraft("four"), {"a": 1, "b": 2}) == 6.0
