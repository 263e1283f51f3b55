"""A local stand-in for Slack's Web API on 127.0.0.1, recording every call.

``WebClient(base_url=fake.api_url)`` talks to it like to slack.com. It answers
chat.postMessage, conversations.replies, reactions.add/remove, chat.getPermalink and auth.test, checks the bot token,
and can be told to fail the next calls of a method (429 with Retry-After, 5xx, Slack errors).
"""

from __future__ import annotations

import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Failure:
    status: int = 200
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None


class FakeSlack:
    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reactions: dict[tuple[str, str], set[str]] = {}
        self._failures: dict[str, list[Failure]] = {}
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    # --- test helpers -----------------------------------------------------------------------
    def fail_next(self, method: str, failure: Failure, times: int = 1) -> None:
        with self._lock:
            self._failures.setdefault(method, []).extend([failure] * times)

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [params for m, params in self.calls if m == method]

    def posts(self) -> list[dict[str, Any]]:
        return self.calls_of("chat.postMessage")

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.reactions.clear()
            self._failures.clear()

    # --- serving ----------------------------------------------------------------------------
    def _answer(self, method: str, params: dict[str, Any], auth: str) -> tuple[Failure, dict]:
        with self._lock:
            queue = self._failures.get(method)
            if queue:
                failure = queue.pop(0)
                self.calls.append((method + ":failed", params))
                return failure, {"ok": False, "error": failure.error or "failed"}
            if auth != f"Bearer {self.token}":
                return Failure(), {"ok": False, "error": "invalid_auth"}
            self.calls.append((method, params))
            if method == "chat.postMessage":
                ts = f"1700000000.{next(self._ts):06d}"
                params["ts"] = ts  # kept with the recorded call, for conversations.replies
                return Failure(), {"ok": True, "channel": params.get("channel"), "ts": ts}
            if method == "conversations.replies":
                thread, channel = str(params.get("ts")), params.get("channel")
                replies = [
                    {"ts": p["ts"], "text": p.get("text"), "metadata": p.get("metadata")}
                    for m, p in self.calls
                    if m == "chat.postMessage"
                    and p.get("channel") == channel
                    and p.get("thread_ts") == thread
                ]
                return Failure(), {"ok": True, "messages": replies}
            if method in ("reactions.add", "reactions.remove"):
                key = (str(params.get("channel")), str(params.get("timestamp")))
                names = self.reactions.setdefault(key, set())
                name = str(params.get("name"))
                if method == "reactions.add":
                    if name in names:
                        return Failure(), {"ok": False, "error": "already_reacted"}
                    names.add(name)
                elif name not in names:
                    return Failure(), {"ok": False, "error": "no_reaction"}
                else:
                    names.discard(name)
                return Failure(), {"ok": True}
            if method == "chat.getPermalink":
                ch, ts = params.get("channel"), str(params.get("message_ts", ""))
                link = f"https://fake.slack.test/archives/{ch}/p{ts.replace('.', '')}"
                return Failure(), {"ok": True, "permalink": link}
            if method == "auth.test":
                return Failure(), {"ok": True, "user_id": "UBOT", "team": "T"}
            return Failure(), {"ok": False, "error": "unknown_method"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                method = self.path.rsplit("/", 1)[-1]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                failure, body = fake._answer(method, params, self.headers.get("Authorization", ""))
                payload = (
                    failure.raw_body if failure.raw_body is not None else json.dumps(body).encode()
                )
                self.send_response(failure.status)
                self.send_header("Content-Type", "application/json")
                for key, value in failure.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
