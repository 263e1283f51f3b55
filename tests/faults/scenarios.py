"""The fault scenarios. Each starts a fresh stack (``harness.Run``), puts ``jobs`` jobs in flight
through the ingest, injects one fault, marks its end and lets ``harness.execute`` count.

Four kinds of stack:
- queue machinery (kills, Redis, Slack): the deterministic stage stand-ins
  (tests/support/standins.py; stage_a slowed so jobs are in flight);
- MLflow: the real pipeline (recorded web in-process, offline model) recording to a real
  ``mlflow server`` (tests/support/mlflow_server.py), directly or through a ``TcpProxy``;
- LLM: the real stages with ``LLM_MODEL=openai/stub`` over HTTP to ``OpenAIStub``;
- target sites and hostile content: the real fetch against loopback servers (the test web of
  tests/support/web.py plus the routes below, ``HeaderDripServer``, a closed port), offline model.
"""

from __future__ import annotations

import gzip
import os
import signal
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

from observability.outbox import RedisOutbox
from services.processes import free_port
from services.recorded_web import RecordedServer, Request, Response, serve_recorded
from tests.support.fake_slack import Failure
from tests.support.mlflow_server import MlflowServer
from tests.support.openai_stub import OpenAIStub
from tests.support.raw_servers import HeaderDripServer, TcpProxy
from tests.support.service import Worker, wait_until
from tests.support.web import hostile_routes, injection_page

from .harness import (
    Result,
    Run,
    Scenario,
    all_ended_with_a_note,
    all_posted,
    in_stage_a,
    none_failed,
)

ARXIV = [
    "https://arxiv.org/abs/0704.0108",
    "https://arxiv.org/abs/0704.0671",
    "https://arxiv.org/abs/0704.0954",
    "https://arxiv.org/abs/0806.0920",
    "https://arxiv.org/abs/1208.6335",
    "https://arxiv.org/abs/1604.08245",
    "https://arxiv.org/abs/1809.00949",
    "https://arxiv.org/abs/2101.04061",
]
BOMB_INFLATED = 1024 * 1024 * 1024  # 1 GB of zeros, gzipped twice: a few KB on the wire
NESTED_DEPTH = 100_000


# --- shared servers ---------------------------------------------------------------------------
class Resources:
    """Servers shared by the scenarios of one session, started on first use, closed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._exit = ExitStack()
        self._web: RecordedServer | None = None
        self._mlflow: MlflowServer | None = None
        self._stub: OpenAIStub | None = None
        self._drip: HeaderDripServer | None = None
        self.mlflow_proxy: TcpProxy | None = None
        self.down_port = free_port()  # nothing listens there

    def web(self) -> RecordedServer:
        if self._web is None:
            routes = {**hostile_routes(), **fault_routes()}
            self._web = self._exit.enter_context(serve_recorded(routes=routes))
        return self._web

    def mlflow(self) -> MlflowServer:
        """The mlflow server, and ``mlflow_proxy`` in front of it (its Host header allowed)."""
        if self._mlflow is None:
            (self.root / "mlflow").mkdir(parents=True, exist_ok=True)
            server = MlflowServer(self.root / "mlflow")
            self._exit.callback(server.stop)
            self.mlflow_proxy = self._exit.enter_context(TcpProxy(server.port))
            server.extra_allowed_hosts.append(f"127.0.0.1:{self.mlflow_proxy.port}")
            self._mlflow = server.start()
        return self._mlflow

    def stub(self) -> OpenAIStub:
        if self._stub is None:
            self._stub = OpenAIStub()
            self._exit.callback(self._stub.stop)
        return self._stub

    def drip(self) -> HeaderDripServer:
        if self._drip is None:
            self._drip = self._exit.enter_context(HeaderDripServer(interval=0.5))
        return self._drip

    def close(self) -> None:
        self._exit.close()


@cache
def gzip_bomb() -> bytes:
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [inner.compress(block) for _ in range(BOMB_INFLATED // len(block))]
    parts.append(inner.flush())
    return gzip.compress(b"".join(parts), 9)


def nested_divs(depth: int = NESTED_DEPTH) -> bytes:
    inner = "<p>The innermost paragraph of a page nested very deeply, with a few words.</p>"
    return f"<html><body>{'<div>' * depth}{inner}{'</div>' * depth}</body></html>".encode()


def fault_routes() -> dict[str, Any]:
    html = {"Content-Type": "text/html; charset=utf-8"}

    def slow(request: Request) -> Response:
        request.stopping.wait(2.0)  # headers after 2 s, then the body over ~2 s

        def body() -> Iterator[bytes]:
            page = injection_page()
            step = max(1, len(page) // 8)
            for i in range(0, len(page), step):
                yield page[i : i + step]
                request.stopping.wait(0.25)

        return Response(200, html, body())

    return {
        "/faults/slow": slow,
        "/faults/gzip-bomb": lambda r: Response(
            200, {**html, "Content-Encoding": "gzip, gzip"}, gzip_bomb()
        ),
        "/faults/nested": lambda r: Response(200, html, nested_divs()),
    }


# --- environments -------------------------------------------------------------------------------
def standins(**extra: str) -> Any:
    env = {"TS_TEST_STANDINS": "1", "TASK_RETRY_MAX_COUNTDOWN": "1", **extra}
    return lambda res: dict(env)


def slack_env() -> Any:
    return standins(SLACK_TIMEOUT="1", TASK_MAX_RETRIES="5")


def mlflow_env(res: Resources, uri: str | None = None) -> dict[str, str]:
    return {
        "FETCH_RECORDED": "true",
        "LLM_MODEL": "offline/extractive",
        "MLFLOW_ENABLE_TRACKING": "true",
        "MLFLOW_ENABLE_TRACING": "true",
        "MLFLOW_TRACKING_URI": uri or res.mlflow().url,
        "TASK_RETRY_MAX_COUNTDOWN": "2",
    }


def llm_env(**extra: str) -> Any:
    def make(res: Resources) -> dict[str, str]:
        return {
            "FETCH_RECORDED": "true",
            "LLM_MODEL": "openai/stub",
            "LLM_API_BASE": res.stub().url,
            "MLFLOW_ENABLE_TRACKING": "false",
            "TASK_RETRY_MAX_COUNTDOWN": "2",
            "_extra": {"stub": res.stub()},
            **extra,
        }

    return make


def site_env(res: Resources) -> dict[str, str]:
    web, drip = res.web(), res.drip()
    overrides = web.settings_overrides()
    overrides["FETCH_ALLOW_HOSTS"] += f",127.0.0.1:{drip.port},127.0.0.1:{res.down_port}"
    return {
        **overrides,
        "LLM_MODEL": "offline/extractive",
        "MLFLOW_ENABLE_TRACKING": "false",
        "FETCH_READ_TIMEOUT": "3",
        "FETCH_TOTAL_TIMEOUT": "6",
        "TASK_MAX_RETRIES": "2",
        "TASK_RETRY_MAX_COUNTDOWN": "1",
    }


# --- bodies: process faults ----------------------------------------------------------------------
def kill_pool_children(run: Run, res: Resources) -> None:
    run.submit([f"https://example.com/child-{i}" for i in range(6)])
    wait_until(lambda: in_stage_a(run) >= 2, 60, "two jobs in stage_a")
    assert run.stack is not None
    llm = run.stack.workers[1]
    children = llm.children()
    assert children, "the llm worker has no pool children"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    run.fault_over()


def kill_worker_node(run: Run, res: Resources) -> None:
    assert run.stack is not None
    run.submit([f"https://example.com/node-{i}" for i in range(6)])
    wait_until(lambda: in_stage_a(run) >= 2, 60, "two jobs in stage_a")
    node = run.stack.workers[1]
    os.killpg(node.pid, signal.SIGKILL)
    node.proc.wait(10)
    replacement = Worker("llm2", "llm", "threads", 2, run.stack.env, run.tmp)
    run.stack.workers.append(replacement)
    replacement.wait_ready()
    run.fault_over()


def restart_redis(run: Run, res: Resources) -> None:
    assert run.stack is not None
    run.submit([f"https://example.com/blip-{i}" for i in range(8)])
    wait_until(lambda: in_stage_a(run) >= 2, 60, "two jobs in stage_a")
    run.stack.redis.restart(down_seconds=8.0)
    run.fault_over()


def stage_a_reran(result: Result, run: Run) -> None:
    runs = [int(run.r.get(k) or 0) for k in run.r.keys("test:stage_a_runs:*")]
    result.extra["stage_a_runs"] = sum(runs)


def expect_rerun(result: Result) -> str | None:
    problem = all_posted(result)
    if problem:
        return problem
    if result.extra.get("stage_a_runs", 0) <= result.submitted:
        return "no stage_a ran twice: the kill missed"
    return None


# --- bodies: Slack ------------------------------------------------------------------------------
def slack_fault(failure: Failure, times_per_job: int = 1) -> Any:
    def body(run: Run, res: Resources) -> None:
        run.fake.fail_next("chat.postMessage", failure, times=6 * times_per_job)
        run.submit([f"https://example.com/slack-{i}" for i in range(6)])
        wait_until(lambda: run.fake.pending_failures() == 0, 120, "Slack's faults served", 0.1)
        run.fault_over()

    return body


# --- bodies: MLflow -------------------------------------------------------------------------------
def mlflow_outage(kind: str) -> Any:
    def body(run: Run, res: Resources) -> None:
        server = res.mlflow()
        run.submit(ARXIV[:6])
        proxy: TcpProxy | None = run.extra.get("proxy")
        if kind == "stopped":
            server.stop()
        elif kind == "hanging":
            assert proxy is not None
            proxy.hang()
        else:
            assert server.proc is not None
            os.killpg(server.proc.pid, signal.SIGSTOP)
        try:
            run.wait_some_final(3, 60)  # jobs end while MLflow is away
            time.sleep(2)
        finally:
            if kind == "stopped":
                server.start()
            elif kind == "hanging":
                assert proxy is not None
                proxy.resume()
            else:
                assert server.proc is not None
                os.killpg(server.proc.pid, signal.SIGCONT)
        run.fault_over()

    return body


def mlflow_args(kind: str) -> Any:
    def make(res: Resources) -> dict[str, Any]:
        server = res.mlflow()
        if server.proc is None:  # a scenario before this one failed to bring it back
            server.start()
        if kind != "hanging":
            return mlflow_env(res)
        proxy = res.mlflow_proxy
        proxy.resume()
        return {**mlflow_env(res, proxy.url), "_extra": {"proxy": proxy}}

    return make


def outbox_drained(result: Result, run: Run) -> None:
    outbox = RedisOutbox(run.r)
    start = time.monotonic()
    try:
        wait_until(lambda: outbox.pending() == 0, 150, "the MLflow outbox drained", 1.0)
        result.extra["outbox_drained_s"] = round(time.monotonic() - start, 1)
    except TimeoutError:
        result.extra["outbox_pending"] = outbox.pending()


def expect_drained(result: Result) -> str | None:
    problem = all_ended_with_a_note(result)
    if problem:
        return problem
    if "outbox_pending" in result.extra:
        return f"MLflow outbox not drained: {result.extra['outbox_pending']} records left"
    return None


# --- bodies: LLM --------------------------------------------------------------------------------
def llm_fault(mode: str, hold: float = 0.0) -> Any:
    def body(run: Run, res: Resources) -> None:
        stub = res.stub()
        stub.reset()
        stub.fault(mode, times=6, hold=hold)
        run.submit(ARXIV[:6])
        wait_until(lambda: stub.faulted >= 6, 150, "the LLM faults served", 0.2)
        run.fault_end = stub.last_fault_at
        if mode == "timeout":  # the fault ended when the client gave up waiting on it
            assert stub.last_fault_received is not None
            timeout = float(run.stack.env["LLM_TIMEOUT"]) if run.stack else hold
            run.fault_end = stub.last_fault_received + timeout

    return body


def llm_stats(result: Result, run: Run) -> None:
    stub = run.extra["stub"]
    result.extra.update(llm_requests=stub.requests, llm_faulted=stub.faulted)


def expect_llm_over_http(check: Any) -> Any:
    def expect(result: Result) -> str | None:
        if result.extra.get("llm_requests", 0) <= result.extra.get("llm_faulted", 0):
            return "the stages never got an answer from the model server"
        return check(result)

    return expect


# --- bodies: target sites -------------------------------------------------------------------------
def site(path_of: Any) -> Any:
    def body(run: Run, res: Resources) -> None:
        run.submit([path_of(res, i) for i in range(6)])

    return body


def web_url(path: str) -> Any:
    return lambda res, i: res.web().url(f"{path}{'&' if '?' in path else '?'}job={i}")


SCENARIOS: list[Scenario] = [
    Scenario("kill_pool_child", "SIGKILL every llm pool child (prefork) with 2 jobs in stage_a",
             kill_pool_children, standins(TS_TEST_SLOW_STAGE_A="3"), fast=True,
             expect=expect_rerun, after=stage_a_reran,
             run_kwargs={"llm_pool": "prefork"}),
    Scenario("kill_worker_node", "SIGKILL the whole llm node (threads) with 2 jobs in stage_a; "
             "a new node started; CELERY_VISIBILITY_TIMEOUT=10",
             kill_worker_node, standins(TS_TEST_SLOW_STAGE_A="2", CELERY_VISIBILITY_TIMEOUT="10"),
             expect=expect_rerun, after=stage_a_reran),
    Scenario("redis_restart", "redis-server (AOF) shut down for 8 s with jobs in stage_a, "
             "restarted on the same port and data", restart_redis,
             standins(TS_TEST_SLOW_STAGE_A="1"), jobs=8, expect=all_posted),
    Scenario("mlflow_stopped", "mlflow server stopped while the jobs run, then restarted",
             mlflow_outage("stopped"), mlflow_args("stopped"), bound_s=420, expect=expect_drained,
             after=outbox_drained),
    Scenario("mlflow_hanging", "MLflow behind a proxy that accepts and never answers, then "
             "forwards again", mlflow_outage("hanging"), mlflow_args("hanging"), bound_s=420,
             expect=expect_drained, after=outbox_drained),
    Scenario("mlflow_sigstop", "mlflow server SIGSTOPped while the jobs run, then SIGCONTed",
             mlflow_outage("sigstop"), mlflow_args("sigstop"), bound_s=420,
             expect=expect_drained, after=outbox_drained),
    Scenario("slack_429", "chat.postMessage answers 429 (Retry-After: 1) once per job",
             slack_fault(Failure(status=429, error="ratelimited", headers={"Retry-After": "1"})),
             slack_env(), expect=all_posted),
    Scenario("slack_500", "chat.postMessage answers 500 twice per job",
             slack_fault(Failure(status=500), times_per_job=2), slack_env(), expect=all_posted),
    Scenario("slack_hang", "chat.postMessage posts, then holds the answer 3 s (client timeout 1 s)",
             slack_fault(Failure(accept=True, hang=3.0)), slack_env(), expect=all_posted),
    Scenario("slack_dropped", "chat.postMessage posts, then drops the connection unanswered",
             slack_fault(Failure(accept=True, drop=True)), slack_env(), fast=True,
             expect=all_posted),
    Scenario("llm_429", "the model server answers 429 (Retry-After: 1) to the first 6 calls",
             llm_fault("429"), llm_env(), expect=expect_llm_over_http(all_posted), after=llm_stats),
    Scenario("llm_500", "the model server answers 500 to the first 6 calls", llm_fault("500"),
             llm_env(), fast=True, expect=expect_llm_over_http(all_posted), after=llm_stats),
    Scenario("llm_timeout", "the model server holds the first 6 answers 8 s (LLM_TIMEOUT=3)",
             llm_fault("timeout", hold=8.0), llm_env(LLM_TIMEOUT="3"),
             expect=expect_llm_over_http(all_ended_with_a_note), after=llm_stats),
    Scenario("llm_invalid_json", "the model server answers the first 6 calls with non-JSON",
             llm_fault("invalid_json"), llm_env(),
             expect=expect_llm_over_http(all_ended_with_a_note), after=llm_stats),
    Scenario("site_slow", "the site sends headers after 2 s and the body over 2 s more",
             site(web_url("/faults/slow")), site_env, expect=none_failed),
    Scenario("site_dripping_headers", "the site drips one header byte every 0.5 s, forever",
             site(lambda res, i: f"{res.drip().url}/drip-{i}"), site_env,
             expect=all_ended_with_a_note),
    Scenario("site_redirect_loop", "the site answers an endless chain of 302s",
             site(web_url("/test/loop?n=0")), site_env, fast=True, expect=all_ended_with_a_note),
    Scenario("site_down", "nothing listens on the site's port (connection refused)",
             site(lambda res, i: f"http://127.0.0.1:{res.down_port}/page-{i}"), site_env,
             expect=all_ended_with_a_note),
    Scenario("hostile_gzip_bomb", "the page is 1 GB of zeros gzipped twice (gzip, gzip)",
             site(web_url("/faults/gzip-bomb")), site_env, expect=all_ended_with_a_note),
    Scenario("hostile_nested_divs", f"the page nests {NESTED_DEPTH:,} divs",
             site(web_url("/faults/nested")), site_env, expect=all_ended_with_a_note),
]  # fmt: skip

BY_NAME = {s.name: s for s in SCENARIOS}
