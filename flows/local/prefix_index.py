"""Which prompt prefixes each model slot has recently computed, for routing by affinity.

A prompt's text is cut into blocks of ``block_chars`` characters, and block i is named by a hash
of block i and the name of block i-1, so a name stands for the whole prefix up to its block
(vLLM's automatic prefix caching names its KV blocks the same way, over tokens). A slot *holds*
a prompt's first k blocks when it recently served a prompt with the same first k blocks. The
dispatcher sends a request to the free slot that holds the most: there, llama-cpp-python's
prompt cache (:mod:`flows.local.backend`) already has those tokens computed.

The index is a hint, not a mirror of the slot's cache: it keeps the ``capacity_blocks`` most
recently used names per slot, and the slot's own cache may have dropped a state the index still
names. A wrong hint costs the prompt evaluation that routing tried to save, never a wrong answer.
Hashes are Python's ``hash`` of str and int tuples, salted per process: the index lives in one
dispatcher process and is never stored.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PrefixIndex"]


class PrefixIndex:
    """Recently served prompt prefixes, per slot, as chained block hashes."""

    def __init__(self, slots: int, block_chars: int = 128, capacity_blocks: int = 16384) -> None:
        if slots < 1 or block_chars < 1 or capacity_blocks < 1:
            raise ValueError("slots, block_chars and capacity_blocks must be at least 1")
        self.block_chars = block_chars
        self.capacity_blocks = capacity_blocks
        self._held: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(slots)]

    def blocks(self, text: str) -> list[int]:
        """The chained names of the text's whole blocks (a partial last block is not named)."""
        names, previous = [], 0
        size = self.block_chars
        for start in range(0, len(text) - size + 1, size):
            previous = hash((previous, text[start : start + size]))
            names.append(previous)
        return names

    def held(self, slot: int, blocks: list[int]) -> int:
        """How many of the prompt's leading blocks the slot holds (0 .. len(blocks))."""
        held = self._held[slot]
        count = 0
        for name in blocks:
            if name not in held:
                break
            count += 1
        return count

    def record(self, slot: int, blocks: list[int]) -> None:
        """The slot is about to compute this prompt: it will hold all of its blocks."""
        held = self._held[slot]
        for name in blocks:
            held[name] = None
            held.move_to_end(name)
        while len(held) > self.capacity_blocks:
            held.popitem(last=False)
