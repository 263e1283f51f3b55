"""A local stand-in for Slack's Web API on 127.0.0.1, recording every call.

``WebClient(base_url=fake.api_url)`` talks to it like to slack.com. It answers
chat.postMessage, conversations.replies, reactions.add/remove, chat.getPermalink and auth.test, checks the bot token,
answers apps.connections.open (app token) with the WebSocket URL of ``socket_mode_url()``
and can be told to fail the next calls of a method (429 with Retry-After, 5xx, Slack errors).

Faults of a post whose answer is lost: ``Failure(accept=True, drop=True)`` posts, then closes the
connection without an answer; ``Failure(accept=True, hang=seconds)`` posts, then holds the answer
past the client's timeout. conversations.history lists a channel's top-level messages (newest
first, ``oldest``/``limit``); like the real API, the conversations.* reads include message
metadata only with ``include_all_metadata``. A message's ts is a Unix time, so ``oldest`` works.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Failure:
    status: int = 200
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    accept: bool = False  # the call takes effect (a post is posted) before the failure shows
    drop: bool = False  # close the connection without any answer
    hang: float = 0.0  # seconds to hold the answer (or the drop): past a client's timeout


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"1", "true"}


class FakeSlack:
    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reactions: dict[tuple[str, str], set[str]] = {}
        self._failures: dict[str, list[Failure]] = {}
        # apps.connections.open (Socket Mode): the app token, and the WebSocket URL to hand out
        self.app_token = "xapp-test-token"
        self.socket_mode_url: Callable[[], str] | None = None
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

    def pending_failures(self, method: str | None = None) -> int:
        """Scripted failures not served yet (of ``method``, or of every method)."""
        with self._lock:
            queues = [self._failures.get(method, [])] if method else self._failures.values()
            return sum(len(q) for q in queues)

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [params for m, params in self.calls if m == method]

    def posts(self) -> list[dict[str, Any]]:
        """Every post Slack accepted (one with a scripted ``accept=True`` failure included)."""
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
            failure = queue.pop(0) if queue else None
            if failure is not None and not failure.accept:
                self.calls.append((method + ":failed", params))
                return failure, {"ok": False, "error": failure.error or "failed"}
            if failure is not None:  # accepted: served as usual, then the scripted fault
                return failure, self._serve(method, params, auth)[1]
            return self._serve(method, params, auth)

    def _messages(self, params: dict[str, Any], thread: str | None) -> list[dict[str, Any]]:
        """The channel's posts in ``thread``, or its top-level ones (``thread`` None)."""
        channel, with_meta = params.get("channel"), _truthy(params.get("include_all_metadata"))
        found = []
        for m, p in self.calls:
            if m != "chat.postMessage" or p.get("channel") != channel:
                continue
            if p.get("thread_ts") == thread:
                message = {"ts": p["ts"], "text": p.get("text")}
                if with_meta and p.get("metadata"):
                    message["metadata"] = p["metadata"]
                found.append(message)
        return found

    def _serve(self, method: str, params: dict[str, Any], auth: str) -> tuple[Failure, dict]:
        """One call, under the lock."""
        if method == "apps.connections.open":  # Socket Mode: app token, not bot token
            if self.socket_mode_url is None or auth != f"Bearer {self.app_token}":
                return Failure(), {"ok": False, "error": "invalid_auth"}
            self.calls.append((method, params))
            return Failure(), {"ok": True, "url": self.socket_mode_url()}
        if auth != f"Bearer {self.token}":
            return Failure(), {"ok": False, "error": "invalid_auth"}
        self.calls.append((method, params))
        if method == "chat.postMessage":
            # a Unix time, strictly increasing (the counter breaks ties within a second)
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            params["ts"] = ts  # kept with the recorded call, for the conversations.* reads
            return Failure(), {"ok": True, "channel": params.get("channel"), "ts": ts}
        if method == "conversations.replies":
            return Failure(), {"ok": True, "messages": self._messages(params, str(params["ts"]))}
        if method == "conversations.history":
            oldest, limit = float(params.get("oldest") or 0), int(params.get("limit") or 100)
            top = [m for m in self._messages(params, None) if float(m["ts"]) > oldest][::-1]
            return Failure(), {"ok": True, "messages": top[:limit], "has_more": len(top) > limit}
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
                if failure.hang:
                    time.sleep(failure.hang)  # outside the fake's lock: other calls go on
                if failure.drop:
                    self.close_connection = True  # no status line: the client sees a disconnect
                    return
                payload = (
                    failure.raw_body if failure.raw_body is not None else json.dumps(body).encode()
                )
                try:
                    self._send(failure, payload)
                except OSError:  # the client stopped waiting (hang): nobody to answer
                    self.close_connection = True

            def _send(self, failure: Failure, payload: bytes) -> None:
                self.send_response(failure.status)
                self.send_header("Content-Type", "application/json")
                for key, value in failure.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
