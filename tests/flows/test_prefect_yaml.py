"""Every deployment in prefect.yaml names a flow that loads and parameters that flow accepts,
so a typo shows here rather than on a worker at 02:00."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_loads_and_accepts_its_parameters(
    deployment: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the project folder
    flow = load_flow_from_entrypoint(str(deployment["entrypoint"]))
    parameters = deployment["parameters"]
    assert isinstance(parameters, dict)
    accepted = flow.validate_parameters(parameters)
    assert set(parameters) <= set(accepted)
    with pytest.raises(Exception, match="no_such_parameter"):
        flow.validate_parameters({**parameters, "no_such_parameter": 1})


def test_the_eval_deployment_reads_what_the_batch_deployment_writes() -> None:
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    batch = by_name["refine-batch-nightly"]["parameters"]
    assert by_name["refine-eval-nightly"]["parameters"]["output"] == batch["output_path"]
