"""The team context YAML: the shipped default loads, bad input names the file and field."""

from __future__ import annotations

import pytest

from pipeline.context import ProjectContext, load_project_context, parse_project_context
from pipeline.errors import ConfigError
from pipeline.settings import Settings

VALID = """
team: Search Squad
themes:
  - name: Retrieval
    pains: [slow reindex]
    stack: [OpenSearch]
    success: recall above 0.9
    keywords: [retrieval, search]
"""


def test_shipped_default_describes_a_small_ml_infra_team():
    context = load_project_context(settings=Settings())
    assert context.team
    names = context.theme_names()
    assert 5 <= len(names) <= 8
    assert "Retrieval & search" in names and "MLOps & observability" in names
    for theme in context.themes:
        assert theme.keywords and theme.pains and theme.stack and theme.success


def test_path_comes_from_settings(tmp_path, monkeypatch):
    path = tmp_path / "ctx.yaml"
    path.write_text(VALID, encoding="utf-8")
    context = load_project_context(settings=Settings(project_context_path=path))
    assert isinstance(context, ProjectContext) and context.theme_names() == ["Retrieval"]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (VALID.replace("    success:", "    colour: red\n    success:"), r"themes\[0\]\.colour"),
        (VALID.replace("[retrieval, search]", "retrieval"), r"themes\[0\]\.keywords"),
        (VALID.replace("    keywords: [retrieval, search]\n", ""), r"themes\[0\]\.keywords"),
        (VALID.replace("team: Search Squad", "teams: Search Squad"), r"team: Field required"),
        (VALID.replace("name: Retrieval", "name: General"), r"reserved"),
        (VALID + VALID.split("themes:\n", 1)[1], r"used twice"),
        ("team: [unclosed", r"not valid YAML"),
        ("- just a list", r"expected a mapping"),
    ],
)
def test_bad_input_names_the_file_and_the_field(tmp_path, yaml_text, expected):
    path = tmp_path / "project_context.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as info:
        load_project_context(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_project_context(tmp_path / "absent.yaml")


def test_prompt_yaml_round_trips():
    context = parse_project_context(VALID)
    assert parse_project_context(context.to_prompt_yaml()) == context
