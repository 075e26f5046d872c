"""The viewers' real output files, written once per test session (see outputs.py)."""

from __future__ import annotations

import pytest

from tests.prefect_server import PrefectServer
from tests.view.outputs import ViewOutputs, write_view_outputs


@pytest.fixture(scope="session")
def view_outputs(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> ViewOutputs:
    """One output file per task kind (and for critique and best-of-N), from real runs."""
    return write_view_outputs(tmp_path_factory.mktemp("view-outputs"), prefect_server)
