"""The run-level guard against a model that answers nothing at all (a wrong chat template or
stop sequence), which :class:`flows.loop.refiner.Refiner` shows every step-1 answer."""

from __future__ import annotations

from dataclasses import dataclass

from refine.errors import ConfigError

__all__ = ["EmptyAnswerGuard"]


@dataclass
class EmptyAnswerGuard:
    """Stops a run whose model answers nothing at all, before it ships a failure per item.

    A chat model behind the wrong chat template or a stop sequence that is its first token
    (the local defaults did that to every instruct model: issue 14) returns an empty answer for
    every request. When the first ``limit`` step-1 answers of a run are all empty, the run stops
    with one :class:`~refine.errors.ConfigError` naming the likely causes; one answer with text
    turns the guard off for the rest of the run.
    """

    limit: int
    empty: int = 0
    answered: bool = False

    def observe(self, content: str, model: str | None) -> None:
        """Count one step-1 answer. Raises ConfigError at the ``limit``-th empty one in a row."""
        if self.answered or self.limit < 1:
            return
        if content.strip():
            self.answered = True
            return
        self.empty += 1
        if self.empty >= self.limit:
            raise ConfigError(
                f"the model{f' {model!r}' if model else ''} returned an empty answer for each of "
                f"the first {self.empty} items, so the run stopped instead of failing every item: "
                "its chat template or stop sequences are probably wrong (a stop sequence that is "
                "the first token it writes ends every answer at once). Check the endpoint's "
                "`stop` and the local model's `chat_format`/`stop` ([local_model]), and look at "
                "what is sent with `refine templates render`"
            )
