"""Looking at a run's output: the word diff between drafts, ``refine show`` (terminal) and
``refine report`` (one self-contained HTML page). Reads files only, like ``flows.eval``."""
