"""How a batch run reads in the Prefect UI: its name and its tags.

A flow run is named after its task and dataset (``summarize · reviews.jsonl``) and tagged with
the task kind and the model (``task:summarize``, ``model:my-model``); its task runs carry the
same tags. Nothing here may show a secret: the names come from the dataset path and settings
that are flow parameters already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.config.run import RunConfig

__all__ = ["batch_run_name", "run_name", "run_tags"]


def run_name(input_path: Path | str, config: RunConfig) -> str:
    """``summarize · reviews.jsonl``: what the run does, to which dataset; a run over some of
    its rows says which (``summarize · reviews.jsonl (first 20 rows)``), so nobody takes a
    trial run for the whole."""
    chosen = config.input.short_selection
    return f"{config.task} · {Path(input_path).name}" + (f" ({chosen})" if chosen else "")


def run_tags(config: RunConfig) -> list[str]:
    """Tags for the flow run and its task runs: the task kind and the model."""
    model = config.endpoint.model or ("local" if not config.endpoint.base_url else "unknown")
    tags = [f"task:{config.task}", f"model:{model}"]
    if config.input.limit is not None or config.input.sample is not None:
        tags.append("input:limit" if config.input.limit is not None else "input:sample")
    return tags


def _as_config(value: Any) -> RunConfig:
    if isinstance(value, RunConfig):
        return value
    if isinstance(value, dict):
        try:
            return RunConfig.model_validate(value)
        except ValueError:
            pass
    return RunConfig()


def batch_run_name() -> str:
    """The ``flow_run_name`` callable of ``refine_batch`` and ``refine_on_dask``: reads the
    run's parameters.

    Prefect calls it with no arguments inside the flow run's context, once the parameters are
    validated (a deployment run passes them as JSON, a Python call as objects).
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    parameters: dict[str, Any] = dict(context.parameters or {}) if context else {}
    input_path = parameters.get("input_path") or "dataset"
    return run_name(input_path, _as_config(parameters.get("config")))
