"""LLMClient over real HTTP: an OpenAI-compatible server on 127.0.0.1 (as vLLM, llama.cpp or LM
Studio would be) reached through ``LLM_API_BASE`` with an ``openai/...`` model name."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import BaseModel

from pipeline.llm import LLMClient
from tests.support.llm import llm_settings


class Verdict(BaseModel):
    verdict: str


class StubServer:
    """Answers /v1/chat/completions from a queue of (status, body, headers)."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, dict, dict[str, str]]] = []
        self.requests: list[tuple[dict, dict[str, str]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((body, {k.lower(): v for k, v in self.headers.items()}))
                status, payload, headers = stub.queue.pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, content: str) -> None:
        self.queue.append(
            (
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "stub-model",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                },
                {},
            )
        )

    def fail(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.queue.append((status, {"error": {"message": "busy", "type": "x"}}, headers or {}))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(name="stub")
def stub_fixture(monkeypatch) -> Iterator[StubServer]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = StubServer()
    yield server
    server.stop()


def test_openai_compatible_server_through_llm_api_base(stub):
    stub.answer('{"verdict": "ok"}')
    settings = llm_settings(llm_model="openai/stub-model", llm_api_base=stub.url)
    result, usage = LLMClient(settings).complete_model(
        "stage_a", [{"role": "user", "content": "judge"}], Verdict
    )
    assert result.verdict == "ok"
    [call] = usage.calls
    assert (call.input_tokens, call.output_tokens) == (11, 7)
    assert call.cost_usd == 0.0  # a local model has no price
    body, headers = stub.requests[0]
    assert body["model"] == "stub-model"
    assert body["response_format"] == {"type": "json_object"}
    assert headers["authorization"] == "Bearer no-key"  # local servers accept any key


def test_http_429_is_retried_then_answered(stub):
    stub.fail(429, {"Retry-After": "1"})
    stub.answer('{"verdict": "later"}')
    settings = llm_settings(llm_model="openai/stub-model", llm_api_base=stub.url)
    result, _ = LLMClient(settings).complete_model(
        "stage_b", [{"role": "user", "content": "judge"}], Verdict
    )
    assert result.verdict == "later" and len(stub.requests) == 2
