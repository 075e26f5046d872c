"""What goes into the model: packaged Jinja2 templates per task kind, and their loader.

Each task kind has a folder (``summarize/``) with ``system.j2``, ``initial.j2`` (step 1),
``refine.j2`` (later steps), ``fix.j2`` (a step after a draft with problems), ``critique.j2`` and
``judge.j2``; user folders come first on the search path, so overriding a prompt
never means editing code. The variables every template receives are documented in
:mod:`prompts.variables`. No Prefect and no network here.
"""

from prompts.analysis import check_rows
from prompts.examples import load_examples, packaged_examples
from prompts.loader import (
    LOOP_ROLES,
    PACKAGED_TEMPLATES,
    ROLES,
    TemplateEnvironment,
    TemplateInfo,
    build_environment,
)
from prompts.tasks import TASK_KINDS, TaskKind, get_task_kind
from prompts.variables import ENGINE_VARIABLES, HIDDEN_FIELDS, build_variables

__all__ = [
    "ENGINE_VARIABLES",
    "HIDDEN_FIELDS",
    "LOOP_ROLES",
    "PACKAGED_TEMPLATES",
    "ROLES",
    "TASK_KINDS",
    "TaskKind",
    "TemplateEnvironment",
    "TemplateInfo",
    "build_environment",
    "build_variables",
    "check_rows",
    "get_task_kind",
    "load_examples",
    "packaged_examples",
]
