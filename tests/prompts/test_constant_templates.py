"""A template that reads no name is rendered once per environment; one that reads any, however
indirectly, is rendered for each request (what the cached re-run's speed must not cost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompts import build_environment
from prompts.loader import TemplateEnvironment

VARIABLES = [{"x": "first input", "step": 1}, {"x": "second input", "step": 2}]


def _environment(tmp_path: Path, files: dict[str, str]) -> TemplateEnvironment:
    for name, text in files.items():
        path = tmp_path / "t" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return build_environment([tmp_path])


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Step {{ step }}.", ["Step 1.", "Step 2."]),
        ("{% if step > 1 %}Again.{% else %}First.{% endif %}", ["First.", "Again."]),
        ('{% include "t/part.j2" %}', ["Of first input.", "Of second input."]),
        ('{% include "t/" ~ "part.j2" %}', ["Of first input.", "Of second input."]),
        ('{% extends "t/base.j2" %}{% block b %}B{% endblock %}', ["B first", "B second"]),
        ("{% for i in range(step) %}*{% endfor %}", ["*", "**"]),
    ],
    ids=["a variable", "a condition", "an include", "a computed include", "extends", "a global"],
)  # fmt: skip
def test_a_template_that_reads_a_name_is_rendered_for_each_request(
    tmp_path: Path, system: str, expected: list[str]
) -> None:
    files = {
        "system.j2": system,
        "part.j2": "Of {{ x }}.",
        "base.j2": "{% block b %}{% endblock %} {{ x.split()[0] }}",
    }
    env = _environment(tmp_path, files)
    for _ in range(2):  # a second round: nothing of the first is replayed
        assert [env.render("t/system.j2", v) for v in VARIABLES] == expected


def test_a_template_that_reads_no_name_renders_its_one_text_every_time(tmp_path: Path) -> None:
    env = _environment(
        tmp_path,
        {
            "system.j2": '{% set tone = "brief" %}Be {{ tone }}. {% include "t/part.j2" %}',
            "part.j2": "{% for w in ['a', 'b'] %}{{ w }}{% endfor %}",
            "initial.j2": "Do {{ x }}.",
        },
    )
    for variables in VARIABLES * 2:
        messages = env.render_messages("t", 1, variables)
        assert messages == [
            {"role": "system", "content": "Be brief. ab"},
            {"role": "user", "content": f"Do {variables['x']}."},
        ]
    assert env.variables_used("t", ("system", "initial")) == {"x"}
