"""Whether an answer ended normally, from the ``finish_reason`` its server sent.

An answer that did not end normally (cut at ``max_tokens``, stopped by a content filter, aborted,
a tool call instead of text) is never an output, a critique, a judge's score or a cache entry.
"""

from __future__ import annotations

__all__ = ["COMPLETE_FINISH_REASONS", "finish_problem"]

COMPLETE_FINISH_REASONS = frozenset({"stop", "eos", "eos_token", "stop_sequence", "end_turn"})
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
- ``end_turn`` (and ``stop_sequence``): Anthropic's ``stop_reason`` for a natural end, and
  ``STOP``: Gemini's ``finishReason``; gateways that pass a provider's own reason through send
  them. Reasons are compared without regard to case or surrounding spaces.

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
_CUT = "the answer was cut off at max_tokens ({})"
_FILTERED = "the answer was stopped by the provider's safety filter ({})"
_PASSED_THROUGH = {
    # Anthropic's stop_reason and Gemini's finishReason, as gateways pass them on
    "max_tokens": _CUT,
    "tool_use": "the model called a tool instead of answering ({})",
    "refusal": "the model refused to answer ({})",
    "safety": _FILTERED,
    "recitation": _FILTERED,
    "blocklist": _FILTERED,
    "prohibited_content": _FILTERED,
    "spii": _FILTERED,
}


def finish_problem(finish_reason: str | None) -> str | None:
    """Why an answer with this finish reason is not complete, or None when it is."""
    reason = (finish_reason or "").strip().lower()
    if not reason or reason in COMPLETE_FINISH_REASONS:
        return None
    if finish_reason in _KNOWN_PROBLEMS:
        return _KNOWN_PROBLEMS[finish_reason]
    shown = f"finish_reason={finish_reason[:60]!r}"  # type: ignore[index]  # not empty here
    if reason in _KNOWN_PROBLEMS:  # another spelling of a known reason: ``LENGTH``
        return f"{_KNOWN_PROBLEMS[reason].rsplit(' (', 1)[0]} ({shown})"
    if reason in _PASSED_THROUGH:
        return _PASSED_THROUGH[reason].format(shown)
    return f"the answer ended with {shown}, not a normal stop"
