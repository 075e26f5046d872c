"""A model slot's prompt cache that keeps what a state needs and counts all it keeps.

llama-cpp-python's ``LlamaRAMCache`` saves, after every answer, the model state (the KV cache
of the prompt and answer) keyed by its tokens, and starts a later prompt from the saved state
sharing the longest prefix with it. As released (0.3.x) each saved state also holds a copy of
the logits of up to ``n_batch`` positions (``Llama.save_state`` copies ``scores``): 512 x
151,936 floats, 311 MB, for the default model, which the cache's memory cap does not count.
Three saved states then weigh a gigabyte beyond the cap.

Only the last position's logits can ever be read back: ``Llama.load_state`` marks the state as
needing evaluation, and ``Llama.generate`` always evaluates at least the prompt's last token
again before it samples. So this cache keeps that one row (600 KB) and counts it, with the
token buffer (4 bytes a token of context), against ``capacity_bytes``. Used in the slot process only
(:mod:`flows.local.backend` installs it in place of ``LlamaRAMCache``).
"""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp
from llama_cpp.llama import LlamaState

__all__ = ["CompactPromptCache", "install"]


def _weight(state: LlamaState) -> int:
    return int(state.llama_state_size) + int(state.scores.nbytes) + int(state.input_ids.nbytes)


class CompactPromptCache(llama_cpp.LlamaRAMCache):
    """``LlamaRAMCache`` whose states keep one row of logits, all of it counted in bytes."""

    @property
    def cache_size(self) -> int:
        """Bytes held: KV state, logits and token ids of every saved state."""
        return sum(_weight(state) for state in self.cache_state.values())

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        compact = LlamaState(
            input_ids=value.input_ids,  # whole: load_state makes it the model's buffer
            scores=value.scores[-1:].copy(),
            n_tokens=value.n_tokens,
            llama_state=value.llama_state,
            llama_state_size=value.llama_state_size,
            seed=value.seed,
        )
        super().__setitem__(key, compact)


def install() -> None:
    """Make llama-cpp-python's server build this cache where its settings ask for the RAM one."""
    llama_cpp.LlamaRAMCache = CompactPromptCache  # type: ignore[misc]
