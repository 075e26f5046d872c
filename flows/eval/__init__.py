"""``refine eval``: per-step figures, comparisons with a paired bootstrap, plots and reports.

It only reads files: nothing here imports the model client (:mod:`flows.llm`).
"""
