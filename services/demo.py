"""``technoshare demo``: recorded links through the REAL Celery chain, on this machine, offline.

No Docker, Slack, LLM key or internet: an embedded broker (redis-server when installed, else
fakeredis' TCP server), an in-process worker consuming both queues, the recorded web
(``FETCH_RECORDED``), the offline extractive model, replies printed (or written to a JSON-lines
file), runs and traces in the local MLflow store (sqlite under STATE_DIR). A Slack message event
with the links goes through the ingest handlers (link extraction, dedupe, job records) exactly
as an Events API request would. Everything it starts is stopped before it returns.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEMO_LINKS = (
    "https://arxiv.org/abs/2101.04061",
    "https://github.com/celery/celery",
    "https://hakibenita.com/sql-anomaly-detection",
)
DEMO_CHANNEL = "C0DEMO"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("urls", nargs="*", help=f"recorded links (default: {len(DEMO_LINKS)})")
    parser.add_argument("--sink", choices=("console", "file"), default="console")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for jobs")
    parser.add_argument("--concurrency", type=int, default=4, help="in-process worker threads")


def _configure_environment(redis_url: str, sink: str) -> None:
    """Demo settings, set before the Celery app is imported (it reads them at import)."""
    os.environ.update(
        REDIS_URL=redis_url,
        SLACK_SINK=sink,
        FETCH_RECORDED="true",
        SLACK_CHANNELS=DEMO_CHANNEL,
        SLACK_BOT_USER_ID="UTECHNOSHARE",
    )
    os.environ.setdefault("LLM_MODEL", "offline/extractive")
    os.environ.pop("CELERY_RESULT_URL", None)
    os.environ.pop("MLFLOW_RUN_ID", None)  # would override the parent run of stage runs


def _message_event(urls: list[str]) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    text = "Worth a look: " + " ".join(f"<{u}>" for u in urls)
    return {
        "type": "event_callback",
        "event_id": f"EvDEMO{ts.replace('.', '')}",
        "event": {
            "type": "message",
            "channel": DEMO_CHANNEL,
            "user": "UDEMO",
            "text": text,
            "ts": ts,
        },
    }


def _run(args: argparse.Namespace, redis_url: str) -> int:
    from celery.contrib.testing.worker import start_worker

    from pipeline.constants import QUEUES
    from pipeline.settings import get_settings, reset_settings_cache
    from services.ingest import IngestService, celery_enqueue
    from services.job_store import FINAL_STATUSES, JobStore
    from services.processes import wait_until
    from services.slack_client import make_sink, sink_file

    _configure_environment(redis_url, args.sink)
    reset_settings_cache()
    settings = get_settings()
    import tasks.entry  # noqa: F401 - registers the tasks
    import tasks.stages  # noqa: F401
    from services.local_recording import local_recording
    from tasks.app import app, celery_config

    app.conf.update(celery_config(settings))
    store = JobStore.from_settings(settings)
    ingest = IngestService(settings, store, celery_enqueue(settings), make_sink(settings))
    urls = list(args.urls) or list(DEMO_LINKS)
    print(f"demo: {len(urls)} link(s) through the Celery chain (in-process worker, {redis_url})")
    started = time.monotonic()
    with (
        local_recording(settings),
        start_worker(
            app,
            pool="threads",
            concurrency=args.concurrency,
            queues=list(QUEUES),  # every queue: io, llm and post
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ),
    ):
        jobs = ingest.handle_event_callback(_message_event(urls))
        ids = [j.job_id for j in jobs]

        def finished() -> bool:
            return all(store.require(j).status in FINAL_STATUSES for j in ids)

        try:
            wait_until(finished, args.timeout, "the demo jobs", 0.2)
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
        records = [store.require(j) for j in ids]
    print(f"\n=== {len(records)} job(s) in {time.monotonic() - started:.1f}s")
    for r in records:
        print(
            f"  {r.status:<11} {r.job.url}  job={r.job_id}"
            + (f"  ({r.last_error})" if r.status == "failed" else "")
        )
    uri = settings.effective_tracking_uri()
    print("\nWhere to look:")
    if settings.mlflow_enable_tracking:
        print(f"  MLflow runs and traces: mlflow ui --backend-store-uri {uri}")
        print(f"    experiment '{settings.mlflow_experiment}', filter tags.job_id = '<job>'")
    if args.sink == "file":
        print(f"  Slack replies: {sink_file(settings).resolve()}")
    ok = all(r.status in ("posted", "gate_failed", "duplicate") for r in records) and records
    return 0 if ok else 1


def main(args: argparse.Namespace) -> int:
    from pipeline.settings import get_settings
    from services.processes import LocalRedis

    state = get_settings().state_dir
    state.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="demo-redis-", dir=state) as tmp:
        redis = LocalRedis(Path(tmp))
        try:
            return _run(args, redis.url)
        finally:
            redis.stop()
