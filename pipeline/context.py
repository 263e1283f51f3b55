"""The team context: who reads the commentary and what they work on.

``prompts/project_context.yaml`` is edited by users, so it is loaded strictly: unknown keys,
missing fields and wrong types raise :class:`ConfigError` naming the file and the field
(``themes[2].keywords``), never a stack trace. Stage B reads it to map a link to the team's
themes; the offline model matches theme ``keywords`` and ``stack`` against the facts.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.settings import Settings, get_settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Theme(_Strict):
    name: str = Field(min_length=1, max_length=60)
    pains: list[str] = Field(default_factory=list)  # what hurts today
    stack: list[str] = Field(default_factory=list)  # tools the team runs for this theme
    success: str = ""  # what success looks like
    keywords: list[str] = Field(min_length=1)  # matched against the facts

    @field_validator("name")
    @classmethod
    def _no_markup(cls, v: str) -> str:
        if "*" in v or "\n" in v:
            raise ValueError("a theme name cannot contain '*' or a newline")
        if v.lower() == "general":
            raise ValueError("'General' is reserved for bullets that fit no theme")
        return v

    @field_validator("pains", "stack", "keywords")
    @classmethod
    def _non_empty_items(cls, v: list[str]) -> list[str]:
        if any(not item.strip() for item in v):
            raise ValueError("items cannot be empty")
        return v


class ProjectContext(_Strict):
    team: str = Field(min_length=1)
    about: str = ""  # one paragraph on what the team does
    themes: list[Theme] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_theme_names(self) -> ProjectContext:
        seen: set[str] = set()
        for theme in self.themes:
            if theme.name.lower() in seen:
                raise ValueError(f"theme name {theme.name!r} is used twice")
            seen.add(theme.name.lower())
        return self

    def theme_names(self) -> list[str]:
        return [t.name for t in self.themes]

    def to_prompt_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(), sort_keys=False, allow_unicode=True, width=100
        ).strip()


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def parse_project_context(text: str, *, origin: str = "<text>") -> ProjectContext:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'team' and 'themes' at the top")
    try:
        return ProjectContext.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{origin}: {problems}") from exc


def load_project_context(
    path: Path | str | None = None, settings: Settings | None = None
) -> ProjectContext:
    """Load the team context from ``path``, else ``settings.project_context_path``."""
    if path is None:
        path = (settings or get_settings()).project_context_path
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    return parse_project_context(text, origin=str(path))
