"""Whether an answer ended normally, from the ``finish_reason`` its server sent.

An answer that did not end normally (cut at ``max_tokens``, stopped by a content filter, aborted,
a tool call instead of text) is never an output, a critique, a judge's score or a cache entry.
"""

from __future__ import annotations

__all__ = ["COMPLETE_FINISH_REASONS", "finish_problem"]

COMPLETE_FINISH_REASONS = frozenset({"stop", "eos", "eos_token", "stop_sequence"})
"""The finish reasons that say the model ended the answer itself, or at a stop sequence asked for.

- ``stop``: OpenAI's "natural stop point or a provided stop sequence"; what llama.cpp's server
  sends for an end-of-generation token or a stop word (``STOP_TYPE_EOS``/``STOP_TYPE_WORD`` in
  ``server-task.cpp``; ``stopped_eos || stopped_word`` in the older ``utils.hpp``), what
  llama-cpp-python's server sends (``llama_types.py``: ``stop``/``length``, ``tool_calls`` and
  ``function_call`` for tools), vLLM (``FINISH_REASON_STRINGS`` in ``vllm/v1/engine``: ``stop``,
  ``length``, ``abort``, and in newer releases ``error`` and ``repetition``) and Ollama, whose
  OpenAI layer passes its ``done_reason`` through (``stop``, ``length``; ``load``/``unload`` for
  a request that only loads or unloads the model; ``tool_calls`` when it called a tool).
- ``eos_token`` and ``stop_sequence``: text-generation-inference's ``FinishReason`` names; its
  chat API sent ``eos_token`` before it mapped that to ``stop`` (``FinishReason::format``) and
  still sends ``stop_sequence`` for a stop sequence. ``eos`` is llama.cpp's own ``stop_type`` for
  the same end, which servers wrapping its native API pass on.

Every other reason is a problem of that answer: ``length``, ``content_filter``, ``abort``,
``error``, ``repetition``, ``tool_calls``/``function_call`` (we send no tools, so a tool call is
no answer), ``load``/``unload``, and any string we do not know.

A missing, null or empty reason counts as complete: small servers omit it, llama-cpp-python's
types allow ``None``, and Ollama sends null for an empty ``done_reason``; failing every answer of
such a server would ship nothing. An empty answer is still a problem of its own, and the draft
keeps ``finish_reason: null`` in its record for anyone who wants to see it.
"""

_KNOWN_PROBLEMS = {
    "length": "the answer was cut off at max_tokens (finish_reason=length)",
    "content_filter": (
        "the answer was stopped by the provider's content filter (finish_reason=content_filter)"
    ),
    "abort": "the server aborted the answer before it ended (finish_reason=abort)",
    "error": "the server hit an error while writing the answer (finish_reason=error)",
    "repetition": "the server stopped the answer as repetitive (finish_reason=repetition)",
    "tool_calls": "the model called a tool instead of answering (finish_reason=tool_calls)",
    "function_call": (
        "the model called a function instead of answering (finish_reason=function_call)"
    ),
}


def finish_problem(finish_reason: str | None) -> str | None:
    """Why an answer with this finish reason is not complete, or None when it is."""
    if not finish_reason or finish_reason in COMPLETE_FINISH_REASONS:
        return None
    known = _KNOWN_PROBLEMS.get(finish_reason)
    if known is not None:
        return known
    return f"the answer ended with finish_reason={finish_reason[:60]!r}, not a normal stop"
