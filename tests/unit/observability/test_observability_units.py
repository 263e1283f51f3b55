"""Observability parts without an MLflow server: the health state (one log line per outage,
never blocking), what a stage records, records through JSON, the daily LLM budget in a real
Redis, the recorder with tracking switched off and against a hanging server, the file outbox,
and records that wait for their parent run."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from observability.derive import summarize
from observability.health import MlflowHealth
from observability.recorder import StageObservation
from observability.records import EndRecord, RootSpan, StageRecord, dump_record, load_record
from observability.tracing import new_traceparent, parse_traceparent
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Fact,
    Facts,
    GateReport,
    GateResult,
    Job,
    LLMCall,
    PostedReply,
    Review,
    SlackMessage,
    Snippet,
    Source,
    StageUsage,
)
from pipeline.stages import STAGE_BY_NAME, STAGE_NAMES
from services import budget
from tests.support.service import RedisServer

JOB = Job(job_id="j1", url="https://arxiv.org/abs/1", canonical_url="https://arxiv.org/abs/1")


class FlakyProbe:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> str | None:
        self.calls += 1
        self.release.wait(5)
        return self.reason


def test_outage_is_logged_once_and_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    probe, now = FlakyProbe(), [0.0]
    changes: list[bool] = []
    health = MlflowHealth(probe, changes.append, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="observability"):
        for _ in range(50):
            health.mark_down("connection refused")
            assert health.available() is False
        probe.reason = None
        now[0] += 10  # past the down TTL: the next call starts a probe in the background
        health.available()
        deadline = time.monotonic() + 5
        while not health.available() and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["MLflow tracking disabled: connection refused", "MLflow tracking re-enabled"]
    assert changes == [False, True]
    assert health.outages == 1


def test_available_never_waits_for_a_hanging_probe() -> None:
    probe, now = FlakyProbe(), [0.0]
    probe.release.clear()  # the probe hangs
    health = MlflowHealth(probe, clock=lambda: now[0])
    started = time.perf_counter()
    for _ in range(100):
        health.available()
    assert time.perf_counter() - started < 0.5
    assert probe.calls == 1  # one probe in flight, not one per call
    probe.release.set()


def evidence() -> Evidence:
    return Evidence(
        url=JOB.url,
        canonical_url=JOB.url,
        adapter="ArxivAdapter",
        sources=[Source(url=JOB.url), Source(url="https://arxiv.org/pdf/1")],
        snippets=[Snippet(id="S1", text="x"), Snippet(id="S2", text="y")],
        coverage=Coverage.partial,
        coverage_reason="abstract only",
        char_count=2,
    )


def observe(stage: str, output, **metrics) -> StageObservation:
    obs = StageObservation(stage=STAGE_BY_NAME[stage], output=output)
    obs.metrics.update(metrics)
    return obs


def test_stage_values_come_from_the_models_and_explicit_values_win() -> None:
    s = summarize(observe("fetch_evidence", evidence(), snippet_count=7))
    assert s.metrics["snippet_count"] == 7 and s.metrics["source_count"] == 2
    assert s.tags["adapter_name"] == "ArxivAdapter" and s.tags["coverage"] == "partial"
    assert s.span_attributes["url"] == JOB.url and s.span_attributes["snippet_count"] == 2
    assert list(s.artifacts) == ["evidence.json"]  # the name comes from the stage table

    usage = StageUsage(
        model="m", prompt_name="p", prompt_version="4", calls=[LLMCall(model="m", cost_usd=0.5)]
    )
    facts = Facts(
        key_facts=[Fact(text="f", snippet_ids=["S1"])],
        tool_calls=2,
        fetched_urls=["u", "u"],
        usage=usage,
    )
    s = summarize(observe("stage_a", facts))
    assert s.metrics["tool_call_count"] == 2 and s.metrics["source_count"] == 2
    assert s.metrics["cost_usd"] == 0.5 and s.tags["prompt_version"] == "4"
    assert list(s.artifacts) == ["stage_a_facts.json"]

    report = GateReport(
        results=[GateResult(name="a", passed=False), GateResult(name="b", passed=True)]
    )
    draft = Commentary(tldr=["t"], summary="s", projects=["p"], usage=usage)
    message = SlackMessage(channel="C1", text="hi")
    review = Review(commentary=draft, report=report, message=message)
    s = summarize(observe("quality_gates", review, nan=float("nan")))
    assert s.metrics["gate_failures"] == 1 and s.tags["failed_gates"] == "a"
    assert "nan" not in s.metrics  # MLflow rejects non-finite values
    assert "llm_call_count" not in s.metrics  # no repair: the review's own usage is empty
    assert list(s.artifacts) == ["gate_report.json"]
    assert '"results"' in s.artifacts["gate_report.json"]  # the report, not the whole review

    s = summarize(observe("stage_b", draft))
    assert list(s.artifacts) == ["stage_b_result.json"] and s.tags["model"] == "m"
    s = summarize(observe("slack_post", PostedReply(ts="1.2", message=message)))
    assert s.tags["reply_ts"] == "1.2" and s.span_attributes["channel"] == "C1"
    assert list(s.artifacts) == ["slack_payload.json"]


def test_records_round_trip_through_json() -> None:
    trace_header, trace_id, span_id = new_traceparent()
    assert parse_traceparent(trace_header) == (trace_id, span_id)
    assert parse_traceparent("garbage") is None
    stage = StageRecord(
        run_key=trace_id, job=JOB, stage="fetch_evidence", started_at=1.0, ended_at=2.0,
        metrics={"latency_seconds": 1.0}, artifacts={"evidence.json": "{}"},
    )  # fmt: skip
    end = EndRecord(
        run_key=trace_id, job=JOB, started_at=1.0, ended_at=3.0, status="FAILED",
        root=RootSpan(trace_id=trace_id, span_id=span_id, name="job-j1", start_ns=1, end_ns=2,
                      inputs={"url": JOB.url}, error="boom"),
    )  # fmt: skip
    for record in (stage, end):
        assert load_record(dump_record(record)) == record


def test_daily_budget_counts_spend_in_redis(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    assert budget.budget_exhausted(redis=client, budget_usd=None) is False  # no budget set
    assert budget.record_spend(0.4, redis=client) == pytest.approx(0.4)
    assert budget.budget_exhausted(redis=client, budget_usd=1.0) is False
    assert budget.record_spend(0.6, redis=client) == pytest.approx(1.0)
    assert budget.budget_exhausted(redis=client, budget_usd=1.0) is True
    assert budget.spent_today(redis=client, day="2000-01-01") == 0.0  # per UTC day
    key = next(iter(client.scan_iter("ts:llm:spend:*")))
    assert 0 < client.ttl(key) <= 2 * 24 * 3600


def test_budget_is_not_exhausted_when_redis_is_away() -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from tests.support.service import free_port

    # no client retries: redis-py's default (3, with backoff) makes each call take ~4 s here
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    assert budget.record_spend(5.0, redis=dead) == 0.0
    assert budget.budget_exhausted(redis=dead, budget_usd=0.01) is False


def test_tracking_off_installs_the_null_recorder(monkeypatch) -> None:
    from observability.recorder import NullRecorder, get_recorder, install_recorder
    from observability.setup import configure
    from pipeline.models import Outcome
    from pipeline.settings import Settings

    recorder = configure(Settings(mlflow_enable_tracking=False))
    try:
        assert isinstance(recorder, NullRecorder) and get_recorder() is recorder
        headers = recorder.begin_job(JOB)
        assert headers == {"ts_job_id": "j1"}
        with recorder.stage(STAGE_BY_NAME["fetch_evidence"], JOB, headers) as obs:
            obs.metrics["x"] = 1
        with pytest.raises(RuntimeError), recorder.stage(STAGE_BY_NAME["stage_a"], JOB, headers):
            raise RuntimeError("stage errors still propagate")
        recorder.end_job(JOB, headers, Outcome.success)
    finally:
        install_recorder(None)


class HangingServer:
    """Accepts connections and never answers: an MLflow server that hangs."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


HANG_TIMEOUT = 2.0  # MLFLOW_HTTP_TIMEOUT: the client's request timeout is clamped to 2-3 s


def test_hanging_mlflow_costs_each_job_little_and_keeps_every_record(
    redis_server: RedisServer, tmp_path, monkeypatch, caplog
) -> None:
    """No worker_init probe first: the process believes MLflow is up. The first job's
    begin_job waits for its parent run at most MLFLOW_HTTP_TIMEOUT (the bound it promises: the
    entry task runs after Slack was acked); from then on MLflow counts as slow or down and no
    hook of any job waits for it, while every record is kept in the outbox."""
    from observability.backend import MlflowRecorder
    from observability.outbox import RedisOutbox
    from observability.recorder import install_recorder
    from pipeline.settings import get_settings
    from tests.support import obs_jobs

    hang = HangingServer()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{hang.port}")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_HTTP_TIMEOUT", str(HANG_TIMEOUT))
    monkeypatch.delenv("TS_TEST_LITELLM", raising=False)
    recorder = MlflowRecorder(get_settings())
    install_recorder(recorder)
    rt = recorder.runtime
    rt.start()  # what warm_up does, minus its start-up probe: the process believes MLflow is up
    outbox = RedisOutbox(client)
    costs = []
    try:
        with caplog.at_level(logging.WARNING, logger="observability"):
            for i in range(8):
                job = obs_jobs.make_job(f"hang{i}", "https://arxiv.org/abs/1")
                before = recorder.overhead_seconds
                headers = recorder.begin_job(job)
                carry: dict = {}
                for stage in STAGE_NAMES:
                    carry = obs_jobs.run_stage(stage, job.model_dump(mode="json"), headers, carry)
                assert carry["reply"]["ts"] == obs_jobs.REPLY_TS
                costs.append(recorder.overhead_seconds - before)
                if i == 3:  # let the first write time out: the rest of the jobs run "down"
                    deadline = time.monotonic() + 10
                    while rt.health.available() and time.monotonic() < deadline:
                        time.sleep(0.1)
            assert recorder.flush(40.0)
        assert costs[0] < HANG_TIMEOUT + 0.5, costs  # begin_job's bounded wait, once
        assert max(costs[1:]) < 0.050, costs
        assert outbox.pending() == 8 * 7  # begin + 5 stages + end per job, all kept
        disabled = [r for r in caplog.records if "MLflow tracking disabled" in r.getMessage()]
        assert len(disabled) == 1
    finally:
        recorder.close(timeout=1.0)
        install_recorder(None)
        hang.close()


def test_importing_the_recorder_seam_loads_neither_mlflow_nor_litellm() -> None:
    """The ingest process may import the recorder seam and the budget, and stays lean."""
    import subprocess
    import sys

    code = (
        "import sys, observability, observability.recorder, services.budget\n"
        "print(sorted(m for m in ('mlflow', 'litellm', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_reaction_recorded_while_mlflow_is_down_waits_in_the_outbox(tmp_path) -> None:
    """Like every run record: kept (here in the local file outbox), never dropped."""
    from observability.backend import MlflowRecorder
    from observability.recorder import Feedback
    from pipeline.settings import Settings
    from tests.support.service import free_port

    settings = Settings(
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",  # nothing listens
        state_dir=tmp_path,
        mlflow_http_timeout=1.0,
    )
    recorder = MlflowRecorder(settings, local=True)
    try:
        assert recorder.runtime.health.check_now() is False
        recorder.record_feedback(Feedback("C1", "1700000000.000200", "UBOB", False, "-1"))
        kept, where = recorder.kept_records()
        assert kept == 1 and where.endswith("mlflow-outbox.jsonl")
        [(_, text)] = recorder.runtime.outbox.peek(10)
        record = load_record(text)
        assert record.kind == "feedback" and record.reply_ts == "1700000000.000200"
        assert record.positive is False and record.user == "UBOB"
    finally:
        recorder.close(timeout=1.0)
