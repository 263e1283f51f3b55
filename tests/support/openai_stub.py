"""An OpenAI-compatible chat completions server on 127.0.0.1 (as vLLM, llama.cpp or LM Studio
would be), reached through ``LLM_API_BASE=<stub.url>`` with an ``openai/...`` model.

Answers come, in order, from: the queue (``answer(content)`` / ``fail(status, headers)``, as in
tests/unit/pipeline/test_llm_openai_compatible.py), then the scripted faults (``fault(mode,
times)``: ``429`` with Retry-After, ``500``, ``timeout`` (the answer held ``hold`` seconds, past
the client's timeout), ``invalid_json`` (200 with content that is not JSON)), then the
default: the offline extractive model's answer to the real stage prompt
(``pipeline.offline_model.answer``), so the real stages run end to end over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class OpenAIStub:
    def __init__(self) -> None:
        self.queue: list[tuple[int, dict, dict[str, str]]] = []
        self.requests = 0
        self.faulted = 0
        self.last_fault_at: float | None = None  # time.monotonic() of the last faulty answer
        self.last_fault_received: float | None = None  # ... and of its request's arrival
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload, headers = stub._respond(body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout): nobody to answer
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # --- scripting ------------------------------------------------------------------------
    def answer(self, content: str) -> None:
        self.queue.append((200, completion(content), {}))

    def fail(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.queue.append((status, {"error": {"message": "busy", "type": "x"}}, headers or {}))

    def fault(self, mode: str, times: int, hold: float = 0.0) -> None:
        assert mode in ("429", "500", "timeout", "invalid_json"), mode
        with self._lock:
            self._faults.extend([(mode, hold)] * times)

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def reset(self) -> None:
        with self._lock:
            self.queue.clear()
            self._faults.clear()
            self.requests = self.faulted = 0
            self.last_fault_at = self.last_fault_received = None

    # --- serving --------------------------------------------------------------------------
    def _respond(self, body: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        with self._lock:
            self.requests += 1
            if self.queue:
                return self.queue.pop(0)
            mode, hold = self._faults.pop(0) if self._faults else ("", 0.0)
            if mode:
                self.last_fault_received = time.monotonic()
        if mode:
            try:
                return self._fault(mode, hold, body)
            finally:
                with self._lock:
                    self.faulted += 1
                    self.last_fault_at = time.monotonic()
        return 200, completion(self._offline(body)), {}

    def _fault(self, mode: str, hold: float, body: dict) -> tuple[int, dict, dict[str, str]]:
        busy = {"error": {"message": f"stub fault {mode}", "type": "server_error"}}
        if mode == "429":
            return 429, busy, {"Retry-After": "1"}
        if mode == "500":
            return 500, busy, {}
        if mode == "timeout":
            self._stopping.wait(hold)
            return 200, completion(self._offline(body)), {}
        return 200, completion("Sure! Here is the answer you asked for: {not json"), {}

    @staticmethod
    def _offline(body: dict[str, Any]) -> str:
        from pipeline import offline_model

        try:
            return offline_model.answer(body.get("messages") or [])
        except ValueError as exc:
            return json.dumps({"error": str(exc)})

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
