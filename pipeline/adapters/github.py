"""GitHub repository links (``/o/r``, ``/o/r/tree/...``, ``/o/r/blob/...``) via the REST API.

One call each: ``GET {GITHUB_API_URL}/repos/{o}/{r}`` for the facts, ``.../readme`` (raw) for the
text, ``.../languages`` for the language mix and ``.../releases/latest`` for the latest release.
The description comes first (as a sentence, GitHub's "About"), the README next, and the other
facts (licence, languages, stars and forks, dates, latest release, topics, default branch,
archived) last as plain sentences (``pipeline.adapters.metadata``). The languages and release
calls are optional: a 404 (no release yet), another client error, a server error or an answer
that is not the JSON expected just leaves their sentences out. A rate-limit answer is raised on
any call, because GitHub's limit is per client: the next call would be refused as well, and the
retry after the reset reads the whole repository.
The similar tech the README names (``pipeline.similar``) goes in ``Evidence.similar_candidates``,
using the README's link texts and code spans to tell lower-case project names from words.
Owner and repository are checked against GitHub's naming rules BEFORE any request (owner: 1-39
of ``[A-Za-z0-9-]``, no leading or trailing ``-``; repository: 1-100 of ``[A-Za-z0-9._-]``, not
``.`` or ``..``) and quoted into the API path, so a link such as ``github.com/../user`` can never
turn into ``GET {GITHUB_API_URL}/user`` carrying the token.
``GITHUB_TOKEN``, when set, goes in the Authorization header only (never logged; the fetcher
drops it on a redirect to another origin). Errors: 404 -> SourceUnavailableError, 403 with
rate-limit headers or 429 -> UpstreamRateLimited, 5xx -> UpstreamServerError.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

from pipeline.adapters.base import (
    FULL_MIN_SENTENCES,
    Passage,
    build_snippets,
    content_snippets,
    judge_coverage,
    make_evidence,
)
from pipeline.adapters.metadata import (
    github_description,
    github_sentences,
    metadata_text,
    release_notes_excerpt,
)
from pipeline.adapters.readme import marked_names, readme_passages
from pipeline.errors import TechnoShareError, UnsupportedContentError, UpstreamRateLimited
from pipeline.extract_meta import script_language
from pipeline.fetch import SafeFetcher
from pipeline.fetch_policy import raise_for_status
from pipeline.links import github_repo_from_url
from pipeline.models import Coverage, Evidence, ReadKind, Source
from pipeline.settings import Settings
from pipeline.similar import find_candidates, own_names

API_VERSION = "2022-11-28"
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_NOT_A_REPO = "This GitHub link does not name a repository the bot can read (owner/name)."
RELEASE_NOTES_MAX_CHARS = 2000  # of the notes' Markdown kept: only their first lines are used


def repo_api_path(owner: str, name: str) -> str:
    """``/repos/{owner}/{name}``, after checking both against GitHub's naming rules.

    Raises ``UnsupportedContentError`` (shown to the user) for a name GitHub cannot have.
    """
    if not _OWNER.fullmatch(owner):
        raise UnsupportedContentError(f"invalid GitHub owner {owner!r}", user_message=_NOT_A_REPO)
    if not _REPO.fullmatch(name) or name in {".", ".."}:
        raise UnsupportedContentError(
            f"invalid GitHub repository name {name!r}", user_message=_NOT_A_REPO
        )
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


class GitHubAdapter:
    name = "GitHubAdapter"

    def __init__(self, settings: Settings, fetcher: SafeFetcher) -> None:
        self.settings = settings
        self.fetcher = fetcher

    def _headers(self) -> dict[str, str]:
        headers = {"X-GitHub-Api-Version": API_VERSION}
        if self.settings.github_token:
            headers["Authorization"] = f"Bearer {self.settings.github_token.get_secret_value()}"
        return headers

    def _repo(self, base: str) -> dict[str, Any]:
        response = self.fetcher.get(
            base, accept="application/vnd.github+json", headers=self._headers()
        )
        try:
            data = response.json()
        except ValueError:
            raise UnsupportedContentError(f"GitHub answered {base} with invalid JSON") from None
        if not isinstance(data, dict):
            raise UnsupportedContentError(f"GitHub answered {base} with unexpected JSON")
        return data

    def _readme(self, base: str) -> tuple[str, str | None] | None:
        """(text, file name if known); ``None`` when the repository has no README."""
        response = self.fetcher.get(
            f"{base}/readme",
            accept="application/vnd.github.raw+json",
            headers=self._headers(),
            check_status=False,
        )
        if response.status_code == 404:
            return None
        raise_for_status(response.status_code, response.headers, response.url)
        if response.media_type != "application/json":
            return response.text(), None
        try:  # a server that ignored the raw media type: GitHub's JSON, base64 content
            data = response.json()
            return base64.b64decode(data["content"]).decode("utf-8", "replace"), data.get("name")
        except (ValueError, KeyError, TypeError):
            raise UnsupportedContentError(f"unreadable README answer from {base}") from None

    def _optional_json(self, url: str) -> Any:
        """The JSON of an optional call, or None when it cannot add anything (see the module
        docstring). A rate limit still raises ``UpstreamRateLimited``."""
        response = self.fetcher.get(
            url, accept="application/vnd.github+json", headers=self._headers(), check_status=False
        )
        try:
            raise_for_status(response.status_code, response.headers, response.url)
        except UpstreamRateLimited:
            raise
        except TechnoShareError:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def _languages(self, base: str) -> dict[str, int]:
        """Bytes of code per language, largest first (GitHub's own order)."""
        data = self._optional_json(f"{base}/languages")
        if not isinstance(data, dict):
            return {}
        return {
            str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)
        }

    def _release(self, base: str) -> dict[str, Any] | None:
        data = self._optional_json(f"{base}/releases/latest")
        if not isinstance(data, dict) or not (data.get("tag_name") or data.get("name")):
            return None
        body = data.get("body")
        notes = body if isinstance(body, str) else ""
        release = {
            "tag": data.get("tag_name"),
            "name": data.get("name"),
            "published_at": data.get("published_at") or data.get("created_at"),
            # only the sentences rendered (no links): the rest of the notes is not evidence
            "notes": release_notes_excerpt(notes[:RELEASE_NOTES_MAX_CHARS]),
        }
        return {k: v for k, v in release.items() if v}

    def read(self, url: str) -> Evidence:
        repo = github_repo_from_url(url)
        if repo is None:
            raise UnsupportedContentError(
                f"not a GitHub repository link: {url}", user_message=_NOT_A_REPO
            )
        owner, name = repo
        base = self.settings.github_api_url.rstrip("/") + repo_api_path(owner, name)
        data = self._repo(base)
        full_name = data.get("full_name") or f"{owner}/{name}"
        license_info = data.get("license") if isinstance(data.get("license"), dict) else {}
        metadata = {
            "full_name": full_name,
            "description": data.get("description"),
            "stars": data.get("stargazers_count"),
            "forks": data.get("forks_count"),
            "language": data.get("language"),
            "topics": data.get("topics") or [],
            "license": (license_info or {}).get("spdx_id"),
            "created_at": data.get("created_at"),
            "pushed_at": data.get("pushed_at"),
            "default_branch": data.get("default_branch"),
            "archived": data.get("archived"),
            "homepage": data.get("homepage"),
        }
        found = self._readme(base)
        metadata["languages"] = self._languages(base)
        metadata["latest_release"] = self._release(base)
        readme, readme_name = found if found else (None, None)
        source = Source(
            url=data.get("html_url") or f"https://github.com/{owner}/{name}",
            title=full_name,
            published=data.get("created_at"),
            updated=data.get("pushed_at"),
            site_name="GitHub",
            language=script_language(readme) if readme else None,
            kind="repository",
            metadata={k: v for k, v in metadata.items() if v not in (None, [], "", {})},
        )
        description = data.get("description")
        about = (
            [Passage(github_description(full_name, description), "About")] if description else []
        )
        passages = about + (readme_passages(readme, readme_name) if readme else [])
        snippets, truncated = build_snippets(
            passages, self.settings, metadata=metadata_text(github_sentences(source))
        )
        if readme and len(content_snippets(snippets)) > len(about):
            coverage, reason = judge_coverage(snippets, truncated)
            if coverage is Coverage.partial and not truncated:
                reason = f"short README (fewer than {FULL_MIN_SENTENCES} sentences of substance)"
            read = ReadKind.readme
        else:
            coverage, read = Coverage.metadata_only, ReadKind.metadata_only
            reason = "no README; repository metadata only" if not readme else "empty README"
        evidence = make_evidence(
            url,
            self.name,
            source,
            snippets,
            read=read,
            coverage=coverage,
            reason=reason,
            truncated=truncated,
        )
        evidence.similar_candidates = find_candidates(
            snippets, own=own_names(evidence), marked=marked_names(readme) if readme else ()
        )
        return evidence
