"""``refine run`` starts promptly (issue 17): building the command line imports none of the
modules of the commands a run does not use, and every command is still there when named.

Each check runs in a fresh interpreter, as the ``refine`` entry point does, and lists the
modules it imported: a module made lazy that someone imports eagerly again fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys

from flows.cli.lazy import LAZY_COMMANDS
from tests.cli_helpers import REFINE

# what `refine run` needs none of before its first request
NOT_ON_THE_RUN_PATH = {
    *(module for module, _ in LAZY_COMMANDS.values()),
    "flows.cli.summary",  # printed after the run
    "flows.deployments",
    "flows.eval",
    "flows.export",
    "rich.table",
}

_PROBE = """
import json, sys
import flows.cli.app
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_command_line_imports_no_lazy_command() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = set(json.loads(result.stdout.splitlines()[-1]))
    assert "flows.cli.app" in imported  # the probe saw what it imported
    assert imported & NOT_ON_THE_RUN_PATH == set()


def test_help_lists_every_command_and_each_lazy_one_builds() -> None:
    result = subprocess.run(
        [REFINE, "--help"], capture_output=True, text=True, timeout=120, env={"COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert {"run", "models", "serve-model", *LAZY_COMMANDS} <= listed
    for name in ("server", "templates"):  # the groups keep their own commands
        sub = subprocess.run(
            [REFINE, name, "--help"], capture_output=True, text=True, timeout=120,
            env={"COLUMNS": "200"},
        )  # fmt: skip
        assert sub.returncode == 0 and "Commands" in sub.stdout, sub.stderr[-2000:]
        assert "--install-completion" not in sub.stdout
