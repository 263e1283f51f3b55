"""The recorded web: real pages, READMEs and arXiv records from ``data/recorded/``, served offline.

Two ways to serve the same content (see ``data/recorded/README.md`` for the data):

``RecordedWeb(data_dir)`` - in-process, for the REAL URLs. ``.transport`` (an
``httpx.BaseTransport``) and ``.resolver`` (host -> [address]) plug into
``SafeFetcher(settings, transport=..., resolver=...)`` (or use ``.fetcher(settings)``); every
SSRF check still runs. The resolver maps each recorded host to ``PLACEHOLDER_ADDRESS`` (a
public address no request ever reaches: the transport answers in-process, and only for requests
pinned to that address) and refuses every other host. Served URLs:

- ``https://export.arxiv.org/api/query?id_list=<id>[,<id>...]`` - Atom built from the arXiv JSON;
- ``https://arxiv.org/html/<id>`` and ``https://arxiv.org/pdf/<id>`` - a paper's recorded LaTeXML
  HTML or PDF (manifest ``html`` / ``pdf``); 404 when none is recorded, as arXiv answers;
- ``https://api.github.com/repos/<o>/<r>`` - repository JSON synthesised from ``repo.json``
  (fields the snapshot lacks - description, stars, forks, language, topics, dates - are ``null``
  or empty, never guessed; snapshot facts are under ``x_recorded``);
- ``https://api.github.com/repos/<o>/<r>/readme`` - raw README with
  ``Accept: application/vnd.github.raw+json`` (else GitHub's JSON with base64 content);
- ``.../languages`` and ``.../releases/latest`` - ``languages.json`` / ``release.json`` of the
  repository's folder when recorded, else 404 (the snapshots hold neither: nothing is guessed);
- each page's own URL from the manifest; a page without one (or whose URL an earlier page
  already uses) is at ``https://recorded.example/pages/<id>`` (``page_url(id)`` says which).

``serve_recorded(data_dir, host="127.0.0.1", port=0, routes=None)`` - a real threaded HTTP
server on loopback serving the same content under ``/arxiv/api/query``, ``/arxiv/html/<id>``,
``/arxiv/pdf/<id>``, ``/github/repos/o/r``,
``/github/repos/o/r/readme`` and ``/pages/<id>``, plus any extra ``routes`` (path -> handler;
tests/support/web.py has the hostile ones). The yielded ``RecordedServer`` gives
``settings_overrides()`` (ARXIV_API_URL, ARXIV_HTML_URL, ARXIV_PDF_URL, GITHUB_API_URL,
FETCH_ALLOW_HOSTS), ``settings(base)``
and ``page_url(id)``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

import httpx

from pipeline.fetch import SafeFetcher
from pipeline.links import canonical_url
from pipeline.settings import REPO_ROOT, Settings

DEFAULT_DATA_DIR = REPO_ROOT / "data" / "recorded"
# A global (public) address, so the SSRF check passes exactly as for a real site. It is the
# deprecated 6to4 relay anycast address (RFC 7526): nothing is served there, and RecordedWeb's
# transport never opens a socket anyway.
PLACEHOLDER_ADDRESS = "192.88.99.1"
SYNTHETIC_PAGE_BASE = "https://recorded.example/pages/"
ARXIV_API = "https://export.arxiv.org/api/query"
GITHUB_API = "https://api.github.com"
# arxiv.org/html/<id> and /pdf/<id>, old-style ids (cs/0011004) included
_FULL_TEXT = re.compile(r"^/(?P<kind>html|pdf)/(?P<id>[\w.-]+(?:/[\w.-]+)?)/?$")


@dataclass
class Request:
    """What a route sees: path, parsed query, headers (lower-case names); ``stopping`` is set
    at server shutdown."""

    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    stopping: threading.Event = field(default_factory=threading.Event)


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""  # an iterable is streamed (tests: endless bodies)


Route = Callable[[Request], Response]


def _not_found(what: str) -> Response:
    body = json.dumps({"message": "Not Found", "detail": what}).encode()
    return Response(404, {"Content-Type": "application/json"}, body)


class RecordedSite:
    """The recorded content and how each kind is answered (shared by both servers)."""

    def __init__(self, data_dir: Path | str = DEFAULT_DATA_DIR) -> None:
        self.data_dir = Path(data_dir)
        self.manifest: list[dict[str, Any]] = json.loads(
            (self.data_dir / "manifest.json").read_text(encoding="utf-8")
        )
        self.pages = {e["id"]: e for e in self.manifest if e["kind"] == "page"}
        self.repos = {e["id"]: e for e in self.manifest if e["kind"] == "github"}
        self.papers = {e["id"]: e for e in self.manifest if e["kind"] == "arxiv"}
        # page URL -> id; the first page claiming a URL gets it, later ones are synthetic
        self.page_by_url: dict[str, str] = {}
        self.page_by_canonical: dict[str, str] = {}
        self.page_urls: dict[str, str] = {}
        for page_id, entry in self.pages.items():
            url = entry.get("url")
            if url and url not in self.page_by_url:
                self.page_by_url[url] = page_id
                self.page_by_canonical[canonical_url(url)] = page_id
                self.page_urls[page_id] = url
            else:
                self.page_urls[page_id] = SYNTHETIC_PAGE_BASE + page_id

    # --- arXiv -----------------------------------------------------------------------------
    def _paper(self, arxiv_id: str) -> dict[str, Any] | None:
        entry = self.papers.get(arxiv_id)
        if entry is None:
            return None
        data: dict[str, Any] = json.loads((self.data_dir / entry["path"]).read_text("utf-8"))
        return data

    def arxiv_atom(self, id_list: str) -> Response:
        """Atom like export.arxiv.org's; unknown ids are left out (an empty feed)."""
        entries = []
        for arxiv_id in filter(None, (i.strip() for i in id_list.split(","))):
            paper = self._paper(re.sub(r"v\d+$", "", arxiv_id))
            if paper is not None:
                entries.append(_atom_entry(paper))
        feed = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
            'xmlns:arxiv="http://arxiv.org/schemas/atom">\n'
            f"  <title>arXiv Query: id_list={escape(id_list)}</title>\n"
            f"  <opensearch:totalResults>{len(entries)}</opensearch:totalResults>\n"
            + "".join(entries)
            + "</feed>\n"
        )
        return Response(200, {"Content-Type": "application/atom+xml; charset=utf-8"}, feed.encode())

    def arxiv_full_text(self, kind: str, arxiv_id: str) -> Response:
        """The recorded ``html`` (LaTeXML) or ``pdf`` of a paper; 404 when none is recorded."""
        entry = self.papers.get(re.sub(r"v\d+$", "", arxiv_id.removesuffix(".pdf")))
        if entry is None or not entry.get(kind):
            return _not_found(f"arxiv {kind}/{arxiv_id}")
        types = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}
        body = (self.data_dir / entry[kind]).read_bytes()
        return Response(200, {"Content-Type": types[kind]}, body)

    # --- GitHub ----------------------------------------------------------------------------
    def _repo_dir(self, owner: str, repo: str) -> Path | None:
        entry = self.repos.get(f"{owner}/{repo}")
        return self.data_dir / entry["path"] if entry else None

    def github_repo(self, owner: str, repo: str) -> Response:
        folder = self._repo_dir(owner, repo)
        if folder is None:
            return _not_found(f"repos/{owner}/{repo}")
        facts = json.loads((folder / "repo.json").read_text("utf-8"))
        spdx = facts.get("license_spdx")
        body = {
            "name": repo,
            "full_name": facts["full_name"],
            "owner": {"login": owner},
            "html_url": facts["html_url"],
            "default_branch": facts.get("default_branch"),
            "license": {"spdx_id": spdx, "key": spdx.lower()} if spdx else None,
            # Not in the snapshot: null or empty rather than invented.
            "description": None,
            "homepage": None,
            "stargazers_count": None,
            "forks_count": None,
            "language": None,
            "topics": [],
            "created_at": None,
            "pushed_at": None,
            "archived": None,
            "x_recorded": {
                k: facts.get(k)
                for k in (
                    "snapshot_commit",
                    "snapshot_commit_date",
                    "top_level_files",
                    "top_level_dirs",
                    "readme_path",
                    "license_path",
                )
            },
        }
        return Response(200, {"Content-Type": "application/json; charset=utf-8"},
                        json.dumps(body).encode())  # fmt: skip

    def github_readme(self, owner: str, repo: str, accept: str) -> Response:
        folder = self._repo_dir(owner, repo)
        if folder is None or not (folder / "README.md").exists():
            return _not_found(f"repos/{owner}/{repo}/readme")
        raw = (folder / "README.md").read_bytes()
        if "raw" in accept:
            return Response(200, {"Content-Type": "application/vnd.github.raw; charset=utf-8"}, raw)
        facts = json.loads((folder / "repo.json").read_text("utf-8"))
        path = facts.get("readme_path") or "README.md"
        body = {
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "encoding": "base64",
            "content": base64.b64encode(raw).decode("ascii"),
            "html_url": f"{facts['html_url']}/blob/{facts.get('default_branch')}/{path}",
        }
        return Response(200, {"Content-Type": "application/json; charset=utf-8"},
                        json.dumps(body).encode())  # fmt: skip

    # --- pages -----------------------------------------------------------------------------
    def page(self, page_id: str) -> Response:
        entry = self.pages.get(page_id)
        if entry is None:
            return _not_found(f"pages/{page_id}")
        html = (self.data_dir / entry["path"] / "source.html").read_bytes()
        # The recorded bytes are UTF-8 (some keep an older <meta charset>); say so, as a
        # server re-serving them would.
        return Response(200, {"Content-Type": "text/html; charset=utf-8"}, html)

    def recorded_urls(self) -> dict[str, list[str]]:
        """Every recorded link by kind, as a user would share it."""
        return {
            "page": [self.page_urls[i] for i in self.pages],
            "github": [e["url"] for e in self.repos.values()],
            "arxiv": [e["url"] for e in self.papers.values()],
        }


def _atom_entry(paper: dict[str, Any]) -> str:
    pid = paper["id"]
    parts = [
        "  <entry>\n",
        f"    <id>http://arxiv.org/abs/{escape(pid)}</id>\n",
        f"    <updated>{escape(paper.get('updated') or paper['published'])}</updated>\n",
        f"    <published>{escape(paper['published'])}</published>\n",
        f"    <title>{escape(paper['title'])}</title>\n",
        f"    <summary>{escape(paper.get('abstract') or '')}</summary>\n",
        *(f"    <author><name>{escape(a)}</name></author>\n" for a in paper.get("authors", [])),
        *(
            f"    <arxiv:{tag}>{escape(paper[key])}</arxiv:{tag}>\n"
            for tag, key in (
                ("doi", "doi"),
                ("comment", "comments"),
                ("journal_ref", "journal_ref"),
            )
            if paper.get(key)
        ),
        f'    <link href="http://arxiv.org/abs/{escape(pid)}" rel="alternate" type="text/html"/>\n',
        f'    <link title="pdf" href="http://arxiv.org/pdf/{escape(pid)}" rel="related" '
        'type="application/pdf"/>\n',
    ]
    categories = paper.get("categories") or []
    if categories:
        parts.append(f"    <arxiv:primary_category term={quoteattr(categories[0])}/>\n")
    parts.extend(f"    <category term={quoteattr(c)}/>\n" for c in categories)
    parts.append("  </entry>\n")
    return "".join(parts)


# Optional GitHub endpoints answered from a recording in the repository's folder, if any.
GITHUB_RECORDINGS = {("languages",): "languages.json", ("releases", "latest"): "release.json"}


def _github_recording(site: RecordedSite, owner: str, repo: str, name: str) -> Response:
    folder = site._repo_dir(owner, repo)
    if folder is None or not (folder / name).exists():
        return _not_found(f"repos/{owner}/{repo}: no {name} recorded")
    return Response(200, {"Content-Type": "application/json; charset=utf-8"},
                    (folder / name).read_bytes())  # fmt: skip


def _github_route(site: RecordedSite, path: str, accept: str) -> Response | None:
    """``/repos/o/r``, ``/repos/o/r/readme``, ``/languages`` and ``/releases/latest`` (path
    relative to the API base)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 3 and parts[0] == "repos":
        return site.github_repo(parts[1], parts[2])
    if len(parts) == 4 and parts[0] == "repos" and parts[3] == "readme":
        return site.github_readme(parts[1], parts[2], accept)
    recording = GITHUB_RECORDINGS.get(tuple(parts[3:])) if parts[:1] == ["repos"] else None
    if recording and len(parts) >= 4:
        return _github_recording(site, parts[1], parts[2], recording)
    return None


# --- in-process: RecordedWeb ------------------------------------------------------------------
class _RecordedTransport(httpx.BaseTransport):
    def __init__(self, web: RecordedWeb) -> None:
        self.web = web

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != PLACEHOLDER_ADDRESS:
            raise httpx.ConnectError(
                f"RecordedWeb answers only requests pinned to {PLACEHOLDER_ADDRESS}, "
                f"not {request.url.host}",
                request=request,
            )
        host = request.headers.get("host", "").split(":")[0].lower()
        answer = self.web.respond(host, request.url.raw_path.decode("ascii"), request.headers)
        body = answer.body if isinstance(answer.body, bytes) else b"".join(answer.body)
        return httpx.Response(answer.status, headers=answer.headers, content=body)


class RecordedWeb:
    """Recorded responses for the real URLs, in-process (see the module docstring)."""

    def __init__(self, data_dir: Path | str = DEFAULT_DATA_DIR) -> None:
        self.site = RecordedSite(data_dir)
        self.hosts = {"export.arxiv.org", "arxiv.org", "api.github.com", "recorded.example"}
        self.hosts.update(urlsplit(u).hostname or "" for u in self.site.page_by_url)
        self.transport: httpx.BaseTransport = _RecordedTransport(self)

    def resolver(self, host: str) -> list[str]:
        """Recorded hosts resolve to the placeholder address; anything else does not resolve."""
        if host.lower().rstrip(".") in self.hosts:
            return [PLACEHOLDER_ADDRESS]
        raise OSError(f"{host} is not in the recorded web")

    def fetcher(self, settings: Settings) -> SafeFetcher:
        return SafeFetcher(settings, transport=self.transport, resolver=self.resolver)

    def page_url(self, page_id: str) -> str:
        return self.site.page_urls[page_id]

    def recorded_urls(self) -> dict[str, list[str]]:
        return self.site.recorded_urls()

    def respond(self, host: str, target: str, headers: Mapping[str, str]) -> Response:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        if host == "export.arxiv.org" and parts.path == "/api/query":
            return self.site.arxiv_atom(",".join(query.get("id_list", [""])))
        if host == "arxiv.org" and (m := _FULL_TEXT.match(parts.path)):
            return self.site.arxiv_full_text(m["kind"], m["id"])
        if host == "api.github.com":
            answer = _github_route(self.site, parts.path, headers.get("accept", ""))
            return answer or _not_found(parts.path)
        if host == "recorded.example" and parts.path.startswith("/pages/"):
            return self.site.page(parts.path.removeprefix("/pages/"))
        for scheme in ("https", "http"):  # a shared link may differ in scheme, slash, order
            page_id = self.site.page_by_canonical.get(canonical_url(f"{scheme}://{host}{target}"))
            if page_id is not None:
                return self.site.page(page_id)
        return _not_found(f"{host}{target}")


# --- on loopback: serve_recorded ---------------------------------------------------------------
@dataclass
class RecordedServer:
    """A running ``serve_recorded`` server."""

    host: str
    port: int
    site: RecordedSite

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def page_url(self, page_id: str) -> str:
        return f"{self.base_url}/pages/{page_id}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def settings_overrides(self) -> dict[str, str]:
        """Environment-style overrides pointing retrieval at this server (and only this port)."""
        return {
            "ARXIV_API_URL": f"{self.base_url}/arxiv/api/query",
            "ARXIV_HTML_URL": f"{self.base_url}/arxiv/html",
            "ARXIV_PDF_URL": f"{self.base_url}/arxiv/pdf",
            "GITHUB_API_URL": f"{self.base_url}/github",
            "FETCH_ALLOW_HOSTS": f"{self.host}:{self.port}",
        }

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (default: fresh ``Settings()``) with the overrides applied."""
        base = base or Settings()
        return base.model_copy(
            update={
                "arxiv_api_url": f"{self.base_url}/arxiv/api/query",
                "arxiv_html_url": f"{self.base_url}/arxiv/html",
                "arxiv_pdf_url": f"{self.base_url}/arxiv/pdf",
                "github_api_url": f"{self.base_url}/github",
                "fetch_allow_hosts": [*base.fetch_allow_hosts, f"{self.host}:{self.port}"],
            }
        )


def _route(site: RecordedSite, routes: Mapping[str, Route], request: Request) -> Response:
    if request.path in routes:
        return routes[request.path](request)
    if request.path == "/arxiv/api/query":
        return site.arxiv_atom(",".join(request.query.get("id_list", [""])))
    if m := _FULL_TEXT.match(request.path.removeprefix("/arxiv")):
        return site.arxiv_full_text(m["kind"], m["id"])
    if request.path.startswith("/github/"):
        answer = _github_route(
            site, request.path.removeprefix("/github"), request.headers.get("accept", "")
        )
        return answer or _not_found(request.path)
    if request.path.startswith("/pages/"):
        return site.page(request.path.removeprefix("/pages/"))
    if request.path == "/":
        return Response(200, {"Content-Type": "application/json"},
                        json.dumps(site.recorded_urls(), indent=1).encode())  # fmt: skip
    return _not_found(request.path)


def _handler(
    site: RecordedSite, routes: Mapping[str, Route], stopping: threading.Event
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; bodies end at close

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(parts.path, parse_qs(parts.query), headers, stopping)
            answer = _route(site, routes, request)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if isinstance(answer.body, bytes) and "Content-Length" not in answer.headers:
                self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            chunks = [answer.body] if isinstance(answer.body, bytes) else answer.body
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for chunk in chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # tests and demos read their own output

    return Handler


@contextlib.contextmanager
def serve_recorded(
    data_dir: Path | str = DEFAULT_DATA_DIR,
    host: str = "127.0.0.1",
    port: int = 0,
    routes: Mapping[str, Route] | None = None,
) -> Iterator[RecordedServer]:
    """Run the recorded web on ``host:port`` (0 = a free port) for the ``with`` block.

    The server thread and every handler thread stop when the block ends (endless test bodies
    watch ``Request.stopping``).
    """
    site = RecordedSite(data_dir)
    stopping = threading.Event()
    server = ThreadingHTTPServer((host, port), _handler(site, routes or {}, stopping))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield RecordedServer(host, server.server_address[1], site)
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
