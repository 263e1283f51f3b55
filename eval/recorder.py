"""Record a link's source into the recorded-web layout (``data/recorded/``), so an eval example
made from it runs offline like every other one.

The link is read through the pipeline's own adapters (``fetch_evidence``) with a fetcher that
keeps every response; those responses are then written in the corpus layout that
``RecordedWeb`` serves (``data/recorded/README.md``):

- arXiv: the export API's Atom entry -> ``arxiv/<id>.json`` (title, authors, abstract,
  categories, dates, comment, journal ref, DOI);
- GitHub: the repository JSON and the README -> ``github/<owner>__<repo>/{repo.json,README.md}``;
- web page: the page's HTML -> ``pages/<id>/source.html`` and ``url.txt``.

Nothing is guessed: fields the responses do not carry are left out. PDFs are not supported by
the layout (``UnsupportedRecording``).
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET  # noqa: S405 - our own fetch of a known API; no DTDs allowed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from eval.dataset import RecordedRef
from pipeline.settings import Settings

_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"


class UnsupportedRecording(ValueError):
    """The link's content cannot be stored in the recorded layout (e.g. a PDF)."""


class RecordingFetcher:
    """Wraps a ``SafeFetcher``: same behaviour, and keeps (url, response) of every ``get``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.responses: list[tuple[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> Any:
        response = self.inner.get(url, **kwargs)
        self.responses.append((url, response))
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _text(node: ET.Element | None) -> str:
    return " ".join((node.text or "").split()) if node is not None else ""


def arxiv_record(atom: bytes, source_url: str) -> dict[str, Any]:
    if b"<!DOCTYPE" in atom or b"<!ENTITY" in atom:
        raise UnsupportedRecording("refusing an Atom document with a DTD")
    root = ET.fromstring(atom)  # noqa: S314 - DTDs refused above
    entry = root.find(f"{_ATOM}entry")
    if entry is None:
        raise UnsupportedRecording(f"no entry in the arXiv answer of {source_url}")
    abs_id = _text(entry.find(f"{_ATOM}id"))
    arxiv_id = re.sub(r"v\d+$", "", abs_id.split("/abs/", 1)[-1])
    summary = entry.find(f"{_ATOM}summary")
    primary = entry.find(f"{_ARXIV}primary_category")
    categories = [c.get("term", "") for c in entry.findall(f"{_ATOM}category") if c.get("term")]
    if primary is not None and primary.get("term") in categories:
        categories.remove(primary.get("term", ""))
        categories.insert(0, primary.get("term", ""))
    authors = [_text(a.find(f"{_ATOM}name")) for a in entry.findall(f"{_ATOM}author")]
    record: dict[str, Any] = {
        "id": arxiv_id,
        "title": _text(entry.find(f"{_ATOM}title")),
        "authors": authors,
        "authors_raw": ", ".join(authors),
        "abstract": "\n".join(
            " ".join(p.split()) for p in (summary.text or "").split("\n\n") if p.strip()
        )
        if summary is not None
        else "",
        "categories": categories,
        "published": _text(entry.find(f"{_ATOM}published")),
    }
    updated = _text(entry.find(f"{_ATOM}updated"))
    if updated and updated != record["published"]:
        record["updated"] = updated
    for tag, key in (("comment", "comments"), ("journal_ref", "journal_ref"), ("doi", "doi")):
        value = _text(entry.find(f"{_ARXIV}{tag}"))
        if value:
            record[key] = value
    record["source"] = source_url
    return record


def _response_for(fetcher: RecordingFetcher, predicate: Any) -> Any:
    for url, response in fetcher.responses:
        if predicate(url, response):
            return response
    return None


def _write_manifest_entry(recorded_dir: Path, entry: dict[str, Any]) -> None:
    path = recorded_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    manifest = [e for e in manifest if (e["kind"], e["id"]) != (entry["kind"], entry["id"])]
    manifest.append(entry)
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _record_arxiv(rec: RecordingFetcher, settings: Settings, out: Path, url: str) -> RecordedRef:
    api = settings.arxiv_api_url
    response = _response_for(rec, lambda u, r: u.startswith(api))
    if response is None:
        raise UnsupportedRecording(f"no arXiv API answer was read for {url}")
    record = arxiv_record(response.content, response.url)
    rel = f"arxiv/{record['id'].replace('/', '_')}.json"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
    entry = {"kind": "arxiv", "id": record["id"], "path": rel, "url": url}
    _write_manifest_entry(out, entry)
    return RecordedRef(kind="arxiv", id=record["id"])


def _record_github(rec: RecordingFetcher, settings: Settings, out: Path, url: str) -> RecordedRef:
    api = settings.github_api_url.rstrip("/")
    repo_re = re.compile(re.escape(api) + r"/repos/([^/]+)/([^/?#]+)$")
    found = _response_for(rec, lambda u, r: repo_re.match(u.split("?")[0]))
    if found is None:
        raise UnsupportedRecording(f"no GitHub repository answer was read for {url}")
    repo = found.json()
    owner, name = repo["full_name"].split("/", 1)
    readme = _response_for(
        rec, lambda u, r: u.split("?")[0].endswith(f"/repos/{owner}/{name}/readme")
    )
    folder = out / "github" / f"{owner}__{name}"
    folder.mkdir(parents=True, exist_ok=True)
    license_info = repo.get("license") or {}
    facts = {
        "full_name": repo["full_name"],
        "html_url": repo.get("html_url") or f"https://github.com/{repo['full_name']}",
        "default_branch": repo.get("default_branch"),
        "license_spdx": license_info.get("spdx_id"),
        "readme_path": "README.md",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / "repo.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    if readme is not None:
        body = readme.content
        if readme.media_type == "application/json":  # GitHub's JSON form: base64 content
            import base64

            body = base64.b64decode(readme.json().get("content", ""))
        (folder / "README.md").write_bytes(body)
    entry = {"kind": "github", "id": repo["full_name"], "path": f"github/{owner}__{name}",
             "url": facts["html_url"]}  # fmt: skip
    _write_manifest_entry(out, entry)
    return RecordedRef(kind="github", id=repo["full_name"])


def _record_page(rec: RecordingFetcher, out: Path, url: str) -> RecordedRef:
    response = _response_for(rec, lambda u, r: "html" in r.media_type)
    if response is None:
        raise UnsupportedRecording(f"no HTML page was read for {url}")
    host = (urlsplit(url).hostname or "page").removeprefix("www.")
    page_id = f"{re.sub(r'[^a-z0-9]+', '-', host.lower()).strip('-')}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
    folder = out / "pages" / page_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "source.html").write_bytes(response.content)
    (folder / "url.txt").write_text(url + "\n", encoding="utf-8")
    _write_manifest_entry(
        out, {"kind": "page", "id": page_id, "path": f"pages/{page_id}", "url": url}
    )
    return RecordedRef(kind="page", id=page_id)


def record_link(
    url: str, settings: Settings, fetcher: Any, recorded_dir: Path
) -> tuple[RecordedRef, str | None]:
    """Read ``url`` with the adapters and store what was read: (manifest reference, title)."""
    from pipeline.adapters import fetch_evidence

    rec = RecordingFetcher(fetcher)
    evidence = fetch_evidence(url, settings, cast(Any, rec))  # duck-typed SafeFetcher
    recorded_dir.mkdir(parents=True, exist_ok=True)
    if evidence.adapter == "ArxivAdapter":
        return _record_arxiv(rec, settings, recorded_dir, url), evidence.title
    if evidence.adapter == "GitHubAdapter":
        return _record_github(rec, settings, recorded_dir, url), evidence.title
    if evidence.adapter == "WebPageAdapter":
        return _record_page(rec, recorded_dir, url), evidence.title
    raise UnsupportedRecording(f"{evidence.adapter} content cannot be recorded ({url})")
