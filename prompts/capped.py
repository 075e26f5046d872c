"""The template sandbox's size guard: ``*`` and ``**`` results that could not fit the output cap.

Jinja's own sandbox stops unsafe attribute access; this one also stops expressions that would
allocate gigabytes before a single character is output (``{{ 'x' * 10**10 }}``).
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

__all__ = ["CappedSandbox"]

_BIG_POWER_BITS = 1_000_000


class CappedSandbox(SandboxedEnvironment):
    """A sandbox that also refuses ``*`` and ``**`` results that could not fit the output cap.

    The streaming cap in :meth:`TemplateEnvironment.render` only sees text once it is output;
    ``{{ 'x' * 10**10 }}`` would allocate gigabytes inside a single expression before that.
    Intercepting the operators also stops Jinja from folding such constants at parse time.
    """

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, max_output_chars: int, **options: Any) -> None:
        super().__init__(**options)
        self.max_output_chars = max_output_chars

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "*" and _repeats_past(left, right, self.max_output_chars):
            raise SecurityError("repetition exceeds the template output cap")
        if op == "**" and _huge_power(left, right):
            raise SecurityError("power too large for a template")
        return super().call_binop(context, op, left, right)


def _repeats_past(left: Any, right: Any, cap: int) -> bool:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return len(seq) * times > cap
    return False


def _huge_power(base: Any, exponent: Any) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or abs(base) < 2:
        return False
    return abs(base).bit_length() * exponent > _BIG_POWER_BITS
