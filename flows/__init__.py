"""Orchestration of prefect-refine: the Prefect flows, and the rooms they are built from.

The public face::

    from flows import refine_batch, refine_one, RunConfig, Trajectory

The flows are :func:`refine_batch` (the batch flow that deployments name as
``flows/batch.py:refine_batch``) and :func:`refine_one`; the ``refine`` CLI lives in
:mod:`flows.cli`. Names are imported on first use (PEP 562), so ``import flows`` stays cheap and
commands that only read files (``refine eval``, ``refine export``) never load Prefect's flow
machinery or the model client through this package.

The rooms, each a sub-package: ``loop`` (the algorithm: render, check, stop, select), ``llm``
(the call: client, retry, cache), ``config`` (settings), ``data`` (records, datasets, the output
file), ``ui`` (artifacts and run labels), ``eval``, ``export``, ``local`` (the embedded model),
``ops`` (the Prefect server) and ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.batch import BatchSummary, refine_batch, refine_one
    from flows.config.run import RunConfig
    from flows.data.records import Draft, Item, SideRequest, StopReason, Trajectory, Usage
    from flows.evaluate import refine_eval

__all__ = [
    "BatchSummary",
    "Draft",
    "Item",
    "RunConfig",
    "SideRequest",
    "StopReason",
    "Trajectory",
    "Usage",
    "refine_batch",
    "refine_eval",
    "refine_one",
]

_HOME = {
    "BatchSummary": "flows.batch",
    "refine_batch": "flows.batch",
    "refine_one": "flows.batch",
    "refine_eval": "flows.evaluate",
    "RunConfig": "flows.config.run",
    "Draft": "flows.data.records",
    "Item": "flows.data.records",
    "SideRequest": "flows.data.records",
    "StopReason": "flows.data.records",
    "Trajectory": "flows.data.records",
    "Usage": "flows.data.records",
}


def __getattr__(name: str) -> Any:
    """Import a public name from the module that defines it, on first use."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'flows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
