"""The evaluation dataset (``data/eval_dataset.json``) and the recorded sources it points at.

Each example is a link as it is shared in Slack plus what a good commentary on it must do:

- ``recorded``: the recorded source by manifest id (``data/recorded/manifest.json``, the same
  layout as the shared corpus), so the suite runs offline and large HTML is not duplicated;
- ``expected_themes``: the team themes (``prompts/project_context.yaml``) a good commentary may
  lead with; any one of them matches. ``General`` means no team theme fits;
- ``must_mention``: terms taken verbatim from the source that the commentary should contain;
- ``followups``: questions asked in the reply's thread, answered from the job's evidence
  (``pipeline.followup``), with the terms each answer must contain or ``does_not_say``.

``load_dataset`` validates strictly (unknown fields are errors) and names the example and the
field of the first problem: ``example 'gh-httpx' (#12): field 'must_mention': ...``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.settings import REPO_ROOT

DEFAULT_DATASET = REPO_ROOT / "data" / "eval_dataset.json"
DEFAULT_RECORDED_DIR = REPO_ROOT / "data" / "recorded"
# A further corpus in the same layout (manifest.json + items), searched when data/recorded/
# lacks an item: set it to use recordings kept outside the repository.
CORPUS_DIR_ENV = "TECHNOSHARE_CORPUS_DIR"

RecordedKind = Literal["arxiv", "github", "page"]
_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class DatasetError(ValueError):
    """The dataset file is malformed; the message names the example and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordedRef(_Strict):
    kind: RecordedKind
    id: str = Field(min_length=1)


class FollowupCase(_Strict):
    """A question asked in the thread of the example's reply, and what its answer must do:
    contain each of ``answer_has`` (case-insensitive), or say the source does not say."""

    question: str = Field(min_length=1)
    answer_has: list[str] = Field(default_factory=list)
    does_not_say: bool = False


class EvalExample(_Strict):
    id: str = Field(pattern=_ID_PATTERN)
    url: str = Field(pattern=r"^https?://\S+$")
    message_text: str = Field(min_length=1)
    recorded: RecordedRef
    expected_themes: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    must_mention: list[str] = Field(default_factory=list)
    language: str = "en"
    notes: str = ""
    followups: list[FollowupCase] = Field(default_factory=list)
    # needs_review: added from a 👎 (``technoshare eval add-from-feedback``); a person fills
    # expected_themes and must_mention, then sets "ready". Only ready examples are evaluated.
    status: Literal["ready", "needs_review"] = "ready"

    @field_validator("expected_themes", "must_mention")
    @classmethod
    def _no_blank_items(cls, v: list[str]) -> list[str]:
        if any(not item.strip() for item in v):
            raise ValueError("items must not be blank")
        return v

    @property
    def kind(self) -> str:
        return self.recorded.kind

    def problem(self) -> tuple[str, str] | None:
        """(field, message) of what a valid example may not lack, else None."""
        if self.url not in self.message_text:
            return "message_text", "the Slack message text must contain the example's url"
        if self.status == "ready":
            for name in ("expected_themes", "must_mention"):
                if not getattr(self, name):
                    return name, "a ready example needs at least one item"
        return None


class EvalDataset(_Strict):
    version: int = 1
    description: str = ""
    examples: list[EvalExample]

    def by_id(self) -> dict[str, EvalExample]:
        return {e.id: e for e in self.examples}

    def ready(self) -> list[EvalExample]:
        return [e for e in self.examples if e.status == "ready"]


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(example)"
    return f"field '{field}': {err['msg']}"


def parse_dataset(raw: Any, *, source: str = "dataset") -> EvalDataset:
    """Validate a decoded dataset; each example is checked on its own so errors can name it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("examples"), list):
        raise DatasetError(f"{source}: expected an object with an 'examples' list")
    examples: list[EvalExample] = []
    seen: set[str] = set()
    for index, item in enumerate(raw["examples"]):
        name = item.get("id") if isinstance(item, dict) else None
        label = f"example {name!r} (#{index})" if name else f"example #{index}"
        try:
            example = EvalExample.model_validate(item)
        except ValidationError as exc:
            raise DatasetError(f"{source}: {label}: {_format_error(exc)}") from exc
        problem = example.problem()
        if problem is not None:
            raise DatasetError(f"{source}: {label}: field '{problem[0]}': {problem[1]}")
        if example.id in seen:
            raise DatasetError(f"{source}: {label}: field 'id': duplicate id {example.id!r}")
        seen.add(example.id)
        examples.append(example)
    header = {k: v for k, v in raw.items() if k != "examples"}
    try:
        return EvalDataset.model_validate({**header, "examples": []}).model_copy(
            update={"examples": examples}
        )
    except ValidationError as exc:
        raise DatasetError(f"{source}: {_format_error(exc)}") from exc


def load_dataset(path: Path | str = DEFAULT_DATASET) -> EvalDataset:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: no such dataset file") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON: {exc}") from exc
    return parse_dataset(raw, source=str(path))


# --- recorded sources ------------------------------------------------------------------------
def recorded_roots(recorded_dir: Path | None = None) -> list[Path]:
    """Directories holding a ``manifest.json`` in the corpus layout, most specific first."""
    candidates = [recorded_dir or DEFAULT_RECORDED_DIR]
    if os.environ.get(CORPUS_DIR_ENV):
        candidates.append(Path(os.environ[CORPUS_DIR_ENV]))
    return [c for c in candidates if (c / "manifest.json").is_file()]


def _manifest(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    entries = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    if isinstance(entries, dict):  # tolerate {"items": [...]}
        entries = entries.get("items") or entries.get("entries") or []
    return {(e["kind"], e["id"]): e for e in entries}


def find_recorded(ref: RecordedRef, recorded_dir: Path | None = None) -> tuple[Path, str]:
    """(root, relative path) of a recorded item; ``DatasetError`` when no manifest lists it."""
    for root in recorded_roots(recorded_dir):
        entry = _manifest(root).get((ref.kind, ref.id))
        if entry is not None:
            return root, str(entry["path"])
    raise DatasetError(f"recorded {ref.kind} {ref.id!r} is in no manifest.json")


_TAGS = re.compile(r"<[^>]+>")


def recorded_text(ref: RecordedRef, recorded_dir: Path | None = None) -> str:
    """The recorded source's readable text: what must-mention terms are checked against.

    arXiv: title + abstract; GitHub: the README; page: ``expected.txt`` (the page's visible
    main text) when present, else the HTML with tags removed.
    """
    root, rel = find_recorded(ref, recorded_dir)
    path = root / rel
    if ref.kind == "arxiv":
        record = json.loads(path.read_text(encoding="utf-8"))
        return f"{record.get('title', '')}\n{record.get('abstract', '')}"
    folder = path if path.is_dir() else path.parent
    if ref.kind == "github":
        return (folder / "README.md").read_text(encoding="utf-8")
    visible = folder / "expected.txt"
    if visible.is_file():
        return visible.read_text(encoding="utf-8")
    return _TAGS.sub(" ", (folder / "source.html").read_text(encoding="utf-8", errors="replace"))


def missing_must_mention(example: EvalExample, recorded_dir: Path | None = None) -> list[str]:
    """Must-mention terms that do not occur (case-insensitive) in the recorded source."""
    text = recorded_text(example.recorded, recorded_dir).casefold()
    return [t for t in example.must_mention if t.casefold() not in text]
