"""Rewards: one number saying how good a draft is, to pick between drafts and to stop early.

A reward is a plain :data:`Reward`, ``(draft, row) -> float``, in the order validators take:
``draft`` is what is judged, what a reward may see of one draft (:class:`RewardDraft`), and
``row`` is the context, the dataset row including the hidden ``reference`` (a string, or a list
of strings when there are several).

Scale: every reward that compares with a reference (``rouge_l``, ``bleu``, ``chrf``,
``exact_match``, ``token_f1``) and :func:`parse_judge_score` give 0..1, higher is better;
sacrebleu's 0..100 is divided by 100, so one threshold means the same thing for all of them.
The one exception is ``loglik``, a mean natural-log probability per token: at most 0, no floor.

A reward that cannot be computed for an item (no reference in the row, no logprobs from the
endpoint) raises :class:`RewardUnavailable` rather than invent a number; the engine records it as
``reward <name> unavailable: <reason>`` and goes on.

rouge-score and sacrebleu are imported by the factories, not at the top, because importing them
costs about 0.4 s that a run without these rewards should not pay.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from refine.errors import ConfigError

__all__ = [
    "REFERENCE_FIELD",
    "REWARD_FLOORS",
    "Reward",
    "RewardDraft",
    "RewardUnavailable",
    "bleu",
    "chrf",
    "exact_match",
    "item_references",
    "loglik",
    "parse_judge_score",
    "rouge_l",
    "token_f1",
]

REFERENCE_FIELD = "reference"
"""The row field holding the reference answer(s); templates never see it."""

REWARD_FLOORS: Mapping[str, float] = {
    "rouge_l": 0.0,
    "bleu": 0.0,
    "chrf": 0.0,
    "exact_match": 0.0,
    "token_f1": 0.0,
    "judge": 0.0,
    "test_pass_rate": 0.0,
    "hidden_test_pass_rate": 0.0,
}
"""What a missing answer scores, by reward name: the bottom of each bounded reward's scale.

Figures over a run count an item with no usable answer (a failed item, an empty or cut-off
draft) at this value, so failures are never left out of a mean. ``loglik`` and user rewards
have no floor: figures leave such items out and say how many.
"""


@dataclass(frozen=True)
class RewardDraft:
    """What a reward sees of a draft: its text and, when the endpoint sent them, token logprobs."""

    text: str
    token_logprobs: tuple[float, ...] | None = None


Reward = Callable[[RewardDraft, Mapping[str, Any]], float]
"""The contract of every reward: ``(draft, row) -> score``; the draft judged, the row context."""


class RewardUnavailable(Exception):
    """A reward cannot be computed for this item; the engine records why instead of a score.

    It is not a :class:`~refine.errors.RefineError` because it ends nothing: the other rewards
    and the run go on. ``reward`` is filled in by the registry's ``NamedReward``, and then the
    message reads ``reward <name> unavailable: <reason>``.
    """

    def __init__(self, reason: str, *, reward: str | None = None) -> None:
        self.reason = reason
        self.reward = reward
        super().__init__(f"reward {reward} unavailable: {reason}" if reward else reason)


def item_references(row: Mapping[str, Any]) -> list[str]:
    """The row's non-blank references: a string is one reference, a list of strings several.

    A blank reference counts as none, since an empty CSV cell means "no answer given" far more
    often than "the right answer is empty".
    """
    value = row.get(REFERENCE_FIELD)
    if value is None:
        raise RewardUnavailable("the item has no reference")
    candidates = [value] if isinstance(value, str) else value
    if not isinstance(candidates, list | tuple) or not all(isinstance(c, str) for c in candidates):
        raise RewardUnavailable(
            f"the reference must be a string or a list of strings, got {value!r:.80}"
        )
    found = [c for c in candidates if c.strip()]
    if not found:
        raise RewardUnavailable("the reference is empty")
    return found


def loglik(draft: RewardDraft, row: Mapping[str, Any]) -> float:
    """Mean log-probability per token: the model's own confidence, needing no reference."""
    logprobs = draft.token_logprobs
    if logprobs is None:
        raise RewardUnavailable("the endpoint returned no logprobs")
    if not logprobs:
        raise RewardUnavailable("the draft has no token logprobs")
    if not all(math.isfinite(value) for value in logprobs):
        raise RewardUnavailable("the logprobs include a value that is not finite")
    return math.fsum(logprobs) / len(logprobs)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(draft: RewardDraft, row: Mapping[str, Any]) -> float:
    """1.0 if the draft equals a reference after SQuAD normalisation, else 0.0 (QA tasks)."""
    answer = _normalize_answer(draft.text)
    return max(float(answer == _normalize_answer(ref)) for ref in item_references(row))


def token_f1(draft: RewardDraft, row: Mapping[str, Any]) -> float:
    """SQuAD token F1 against the best-matching reference: partial credit for partial answers."""
    answer = _normalize_answer(draft.text).split()
    return max(_f1(answer, _normalize_answer(ref).split()) for ref in item_references(row))


def _f1(answer: list[str], reference: list[str]) -> float:
    if not answer or not reference:  # SQuAD v2: two empty answers agree, one empty one does not
        return float(answer == reference)
    same = sum((Counter(answer) & Counter(reference)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(answer), same / len(reference)
    return 2 * precision * recall / (precision + recall)


def rouge_l(use_stemmer: bool = True) -> Reward:
    """ROUGE-L F-measure (rouge-score) against the best reference, for summaries.

    The scorer and its tokenizer are built here, once, not on every call.
    """
    _require("rouge_l", "use_stemmer", use_stemmer, bool)
    from rouge_score.rouge_scorer import RougeScorer
    from rouge_score.tokenizers import DefaultTokenizer

    # The same tokenizer RougeScorer picks by default, passed in: left to choose, it logs that
    # choice through absl, whose first log call runs logging.basicConfig() on an unconfigured
    # root logger and turns every later Prefect log line into plain "INFO:prefect..." text.
    scorer = RougeScorer(["rougeL"], tokenizer=DefaultTokenizer(use_stemmer))

    def reward(draft: RewardDraft, row: Mapping[str, Any]) -> float:
        scores = scorer.score_multi(item_references(row), draft.text)
        return float(scores["rougeL"].fmeasure)

    return reward


def bleu(tokenize: str = "13a", lowercase: bool = False) -> Reward:
    """Sentence BLEU (sacrebleu, exp smoothing, effective order) against all references, 0..1."""
    _require("bleu", "tokenize", tokenize, str)
    _require("bleu", "lowercase", lowercase, bool)
    from sacrebleu.metrics import BLEU

    if tokenize not in BLEU.TOKENIZERS:
        known = ", ".join(BLEU.TOKENIZERS)
        raise ConfigError(f"reward bleu: unknown tokenize {tokenize!r}; known: {known}")
    try:
        metric = BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
    except ImportError as exc:  # ja-mecab, spm, ... need packages of their own
        raise ConfigError(f"reward bleu: tokenize {tokenize!r} needs {exc.name or exc}") from exc

    def reward(draft: RewardDraft, row: Mapping[str, Any]) -> float:
        return float(metric.sentence_score(draft.text, item_references(row)).score) / 100

    return reward


def chrf(word_order: int = 0, lowercase: bool = False) -> Reward:
    """Sentence chrF (sacrebleu) against the best reference, 0..1; ``word_order=2`` is chrF++."""
    _require("chrf", "word_order", word_order, int)
    _require("chrf", "lowercase", lowercase, bool)
    if word_order < 0:
        raise ConfigError(f"reward chrf: word_order must be 0 or more, got {word_order}")
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=word_order, lowercase=lowercase)

    def reward(draft: RewardDraft, row: Mapping[str, Any]) -> float:
        return float(metric.sentence_score(draft.text, item_references(row)).score) / 100

    return reward


def _require(reward: str, parameter: str, value: object, kind: type) -> None:
    """Fail at config time on a parameter of the wrong type (bool is not taken for an int)."""
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        wanted = {bool: "true or false", int: "a whole number", str: "a string"}[kind]
        raise ConfigError(f"reward {reward}: {parameter} must be {wanted}, got {value!r}")


# A number as a judge may spell it, so that what is no plain score is read whole and refused:
# "1e999" is not "1", "1,5/10" (a decimal comma) is neither "1" nor "5/10", and "NaN" and
# "Infinity" are not numbers a scale holds.
_NUMBER = (
    r"(?<![\w.,])([-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.,]\d)"
    r"|[-+]?\b(?:nan|inf(?:inity)?)\b)"
)
_ASIDE = r"(?:\s*\([^)\n]{0,40}\))?"  # "Score (1-10): 7"
_LEAD = r"\**\s*(?:is\b)?[\s:=*]*"  # "Score: ", "**Score:** ", "score is "
_OUT_OF = rf"\s*\**\s*(?:/|out\s+of)\s*\**\s*{_NUMBER}"
# Tried in order, the last match of a pattern wins: judges reason first and conclude last.
_JUDGE_PATTERNS = (
    re.compile(rf"\b(?:score|rating|grade)\b{_ASIDE}{_LEAD}{_NUMBER}(?:{_OUT_OF})?", re.I),
    re.compile(rf"{_NUMBER}{_OUT_OF}", re.I),
    re.compile(rf"\*\*\s*{_NUMBER}\s*\*\*()"),
    re.compile(rf"^\s*{_NUMBER}\s*\.?\s*$()"),
)


def parse_judge_score(text: str, scale_max: float = 10) -> float:
    """The score an LLM judge gave, divided by its scale so that it lies in 0..1.

    Understands "Score: 7/10", "7 out of 10", "**8**", "Rating: 4.5" and a bare number. An
    explicit "out of N" wins over ``scale_max``. No score, one outside the scale, or one that
    is no finite number ("1e999", "NaN", "Infinity", read whole, never as their first digit)
    raises :class:`RewardUnavailable`: a misread judge must not count as a verdict.
    """
    if isinstance(scale_max, bool) or not isinstance(scale_max, int | float) or scale_max <= 0:
        raise ConfigError(f"judge scale_max must be a positive number, got {scale_max!r}")
    for pattern in _JUDGE_PATTERNS:
        matches = pattern.findall(text)
        if not matches:
            continue
        score_text, out_of_text = matches[-1]
        score = float(score_text)
        out_of = float(out_of_text) if out_of_text else float(scale_max)
        if not math.isfinite(score) or not math.isfinite(out_of):
            shown = score_text if not math.isfinite(score) else f"{score_text}/{out_of_text}"
            raise RewardUnavailable(f"the judge's score {shown} is not a finite number")
        if out_of <= 0 or not 0 <= score <= out_of:
            raise RewardUnavailable(f"the judge's score {score_text} is outside 0..{out_of:g}")
        return score / out_of + 0.0  # + 0.0: "-0/10" scores 0.0, not -0.0
    raise RewardUnavailable(f"no score found in the judge's answer {text.strip()!r:.120}")
