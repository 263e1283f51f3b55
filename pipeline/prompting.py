"""Prompt templates, and the one way untrusted text enters a prompt.

Templates are Markdown files in ``prompts/`` with ``{{var}}`` placeholders (the syntax of MLflow's
Prompt Registry, so a registry-backed :class:`PromptSource` can serve the same text). A file's
version is ``file:`` + the first 12 hex digits of the SHA-256 of its text.

Untrusted text (evidence, fetched pages, source metadata, facts) is wrapped in a data block whose
delimiter carries a random nonce::

    <<<EVIDENCE 3f9a0c1d2b4e5f60>>>
    [S1] first snippet on one line
    <<<END EVIDENCE 3f9a0c1d2b4e5f60>>>

Inside the block every run of three or more ``<`` or ``>`` is replaced, so the text cannot close
the block or open a new one, and the nonce itself cannot appear. Each item is one line
(``[ID] text``, whitespace collapsed) so a newline in the text cannot forge an item.
:func:`data_blocks` and :func:`block_items` parse this format back (the offline model reads
its prompt with them).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.errors import ConfigError
from pipeline.settings import REPO_ROOT
from pipeline.text import normalize_space

PROMPTS_DIR = REPO_ROOT / "prompts"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANGLE_RUN = re.compile(r"<{3,}|>{3,}")
_BLOCK = re.compile(
    r"^<<<(?P<label>[A-Z][A-Z_]*) (?P<nonce>[0-9a-f]{16})>>>\n"
    r"(?P<body>.*?)\n?"
    r"^<<<END (?P=label) (?P=nonce)>>>$",
    re.S | re.M,
)
_ITEM = re.compile(r"^\[(?P<id>[A-Za-z0-9_.:-]{1,32})\] (?P<text>.*)$")

# The answer-format marker: one line in each stage's system template, e.g.
#   ANSWER-FORMAT: technoshare.commentary/v1 tldr_items=3 summary_sentences=10-15
# It names the JSON the stage expects and its sizes; the offline model reads it (only from the
# system message, never from data blocks) to know which answer to build.
FACTS_FORMAT = "technoshare.facts/v1"
COMMENTARY_FORMAT = "technoshare.commentary/v1"
_ANSWER_FORMAT = re.compile(
    r"^ANSWER-FORMAT: (?P<format>technoshare\.[a-z]+/v\d+)(?P<params>.*)$", re.M
)
_PARAM = re.compile(r"\b([a-z_]+)=(\d+)(?:-(\d+))?\b")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str
    version: str  # "file:<sha256[:12]>" for files; the registry's version otherwise


class PromptSource(Protocol):
    def get(self, name: str) -> PromptTemplate: ...


def file_version(text: str) -> str:
    return "file:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class FilePromptSource:
    """Templates read from ``<directory>/<name>.md`` on every ``get`` (edits apply at once)."""

    def __init__(self, directory: Path | str = PROMPTS_DIR) -> None:
        self.directory = Path(directory)

    def get(self, name: str) -> PromptTemplate:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"invalid prompt name {name!r}")
        path = self.directory / f"{name}.md"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"prompt template {path} cannot be read: {exc}") from exc
        return PromptTemplate(name=name, text=text, version=file_version(text))


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def render(template: PromptTemplate, **variables: object) -> str:
    """Fill ``{{var}}`` placeholders in one pass (values are never re-scanned, so a value that
    contains ``{{x}}`` stays as it is). A placeholder without a value raises ConfigError;
    unused values are allowed (a registry version may drop a placeholder)."""
    missing = sorted(placeholders(template.text) - variables.keys())
    if missing:
        raise ConfigError(
            f"prompt {template.name} ({template.version}) needs variables: {', '.join(missing)}"
        )
    return _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), template.text)


def prompt_ids(templates: Iterable[PromptTemplate]) -> tuple[str, str]:
    """(names, versions) comma-joined in the same order, for ``StageUsage``."""
    items = list(templates)
    return ",".join(t.name for t in items), ",".join(t.version for t in items)


# --- untrusted text ------------------------------------------------------------------------
def new_nonce() -> str:
    return secrets.token_hex(8)


def neutralize(text: str, nonce: str) -> str:
    """Make ``text`` unable to close or forge a data block: runs of 3+ angle brackets become
    guillemets of the same length, and the nonce is removed."""
    text = _ANGLE_RUN.sub(lambda m: ("‹" if m.group(0)[0] == "<" else "›") * len(m.group(0)), text)
    return text.replace(nonce, "[nonce]")


def one_line(text: str, nonce: str) -> str:
    return normalize_space(neutralize(text, nonce))


def wrap_data(label: str, body: str, nonce: str) -> str:
    """``body`` between ``<<<LABEL nonce>>>`` and ``<<<END LABEL nonce>>>``, neutralised."""
    if not re.fullmatch(r"[A-Z][A-Z_]*", label):
        raise ValueError(f"bad data block label {label!r}")
    return f"<<<{label} {nonce}>>>\n{neutralize(body, nonce)}\n<<<END {label} {nonce}>>>"


def items_body(items: Iterable[tuple[str, str]], nonce: str) -> str:
    """``[ID] text`` lines, each text collapsed to one line."""
    return "\n".join(f"[{item_id}] {one_line(text, nonce)}" for item_id, text in items)


def fields_body(fields: Mapping[str, object], nonce: str) -> str:
    """``key: value`` lines for metadata; values collapsed to one line, empty ones skipped."""
    lines = []
    for key, value in fields.items():
        if value is None or value == "" or value == []:
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        lines.append(f"{key}: {one_line(shown, nonce)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class DataBlock:
    label: str
    nonce: str
    body: str


def data_blocks(text: str, label: str | None = None) -> list[DataBlock]:
    """Every well-formed data block in ``text`` (optionally only those with ``label``)."""
    found = [DataBlock(m["label"], m["nonce"], m["body"]) for m in _BLOCK.finditer(text)]
    return [b for b in found if label is None or b.label == label]


def block_items(body: str) -> list[tuple[str, str]]:
    """The ``[ID] text`` lines of a block body."""
    out = []
    for line in body.splitlines():
        m = _ITEM.match(line)
        if m and m["text"].strip():
            out.append((m["id"], m["text"].strip()))
    return out


def block_fields(body: str) -> dict[str, str]:
    """The ``key: value`` lines of a block body (first occurrence wins)."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", key) and key not in out:
            out[key] = value.strip()
    return out


def answer_format(system_text: str) -> tuple[str, dict[str, tuple[int, int]]] | None:
    """The marker in a system prompt: (format, {param: (low, high)}), or None when absent.
    Data blocks are removed first so quoted text can never supply a marker."""
    m = _ANSWER_FORMAT.search(_BLOCK.sub("", system_text))
    if not m:
        return None
    params = {}
    for key, low, high in _PARAM.findall(m["params"]):
        params[key] = (int(low), int(high or low))
    return m["format"], params
