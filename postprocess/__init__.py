"""What happens to what comes out of the model: pure functions, no Prefect and no network.

Cleaners turn a raw answer into the draft the next step sees (strip fences, extract code,
truncate). Each is a plain ``Callable[[str], str]``; the registry only exists so configuration
can name them.
"""

from postprocess.chain import CleanerChain, default_chain_for
from postprocess.cleaners import (
    Cleaner,
    extract_code_block,
    normalize_whitespace,
    strip,
    strip_code_fences,
    truncate_chars,
)
from postprocess.registry import CleanerFactory, CleanerRegistry, build_chain, default_cleaners

__all__ = [
    "Cleaner",
    "CleanerChain",
    "CleanerFactory",
    "CleanerRegistry",
    "build_chain",
    "default_chain_for",
    "default_cleaners",
    "extract_code_block",
    "normalize_whitespace",
    "strip",
    "strip_code_fences",
    "truncate_chars",
]
