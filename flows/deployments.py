"""Deployments of ``refine_batch``: served from this machine, or on a work pool's workers.

A deployment's parameters are the dataset and output paths and the run's settings (what the
command line and config file set, nothing else, so each worker's own defaults still apply);
never an API key, which reaches the run through a Prefect Secret block or the worker's
environment (see :mod:`flows.llm.api_key`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from flows.config.run import RunConfig
from flows.data.reading import is_hub_name
from flows.ui.labels import run_tags

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "batch_parameters",
    "deploy_batch",
    "ensure_process_pool",
    "serve_batch",
]

DEFAULT_DEPLOYMENT = "refine-batch"


def batch_parameters(input_path: Path, output_path: Path, config: RunConfig) -> dict[str, Any]:
    """The flow parameters of a deployed run: absolute paths (workers start elsewhere) and the
    settings that were set, as JSON."""
    return {
        "input_path": str(input_path if is_hub_name(input_path) else _absolute(input_path)),
        "output_path": str(output_path.expanduser().resolve()),
        "config": config.model_dump(mode="json", exclude_unset=True),
    }


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


async def ensure_process_pool(name: str) -> bool:
    """Create the ``process`` work pool ``name`` unless it exists; True when created."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return False
    return True


def _deployment_fields(
    name: str, parameters: dict[str, Any], config: RunConfig, cron: str | None
) -> dict[str, Any]:
    """What a served and a deployed ``refine_batch`` share. The entrypoint is the module path
    ``flows.batch.refine_batch``, so any machine with prefect-refine installed runs it without
    a copy of this folder."""
    from prefect.deployments.runner import EntrypointType

    return {
        "name": name,
        "cron": cron,
        "parameters": parameters,
        "tags": run_tags(config),
        "description": f"refine {parameters['input_path']} into {parameters['output_path']}",
        "entrypoint_type": EntrypointType.MODULE_PATH,
    }


def deploy_batch(
    name: str,
    pool: str,
    parameters: dict[str, Any],
    config: RunConfig,
    cron: str | None = None,
) -> UUID:
    """Create (or update) the deployment ``refine-batch/<name>`` on ``pool``."""
    from flows.batch import refine_batch

    return refine_batch.deploy(  # type: ignore[return-value]  # sync caller: a UUID
        work_pool_name=pool,
        **_deployment_fields(name, parameters, config, cron),
        build=False,
        push=False,
        print_next_steps=False,
    )


def serve_batch(
    name: str, parameters: dict[str, Any], config: RunConfig, cron: str | None = None
) -> None:
    """Serve ``refine_batch`` from this process with an optional cron schedule, until Ctrl-C
    (Prefect's ``serve``: each run executes in a subprocess of this one).

    Served as a deployment, not through ``flow.serve``: that pickles the flow function into
    the subprocess, where its postponed annotations (``Path``) no longer resolve; a
    deployment's run imports ``flows.batch`` afresh instead.
    """
    from prefect import serve

    from flows.batch import refine_batch

    deployment = refine_batch.to_deployment(**_deployment_fields(name, parameters, config, cron))
    serve(deployment)  # type: ignore[arg-type]  # sync caller: a RunnerDeployment
