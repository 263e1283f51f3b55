"""`technoshare ingest --workers 2`: two HTTP processes on one port, each with its own GIL (the
headroom that absorbs a stall at 200 events/s; bench/ingest_load.py --workers 2), serving
signed events as one: every event one job, a retry of an event nothing more, whichever process
gets it; stopped, nothing of it is left running."""

from __future__ import annotations

import subprocess

import pytest
import redis

from services.job_store import JobStore
from tests.support.service import Ingest, message_event, post_event, service_env, wait_until

pytestmark = pytest.mark.e2e


def serving_processes(pid: int) -> list[int]:
    """The ingest's HTTP worker processes (uvicorn spawns them as multiprocessing children)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    found = []
    for child in map(int, out):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as fh:
                if b"spawn_main" in fh.read():
                    found.append(child)
        except OSError:
            continue
    return found


def test_two_ingest_processes_serve_one_port_and_each_event_makes_one_job(
    tmp_path, redis_server, fake_slack
):
    env = service_env(
        redis_server.url, fake_slack.api_url, tmp_path, MLFLOW_ENABLE_TRACKING="false"
    )
    ingest = Ingest(env, tmp_path, workers=2)
    try:
        workers = wait_until(
            lambda: (found if len(found := serving_processes(ingest.pid)) >= 2 else None),
            30, "two ingest processes",
        )  # fmt: skip
        ids: list[str] = []
        for i in range(20):
            event = message_event(
                f"see <https://example.com/w/{i}>", event_id=f"EvW{i}", ts=f"70.{i}"
            )
            resp = post_event(ingest.url, event)
            assert resp.status_code == 200, resp.text
            ids += resp.json()["jobs"]
        retried = message_event("see <https://example.com/w/0>", event_id="EvW0", ts="70.0")
        again = post_event(ingest.url, retried, **{"X-Slack-Retry-Num": "1"})
        assert again.status_code == 200 and not again.json().get("jobs")
        store = JobStore(redis.Redis.from_url(redis_server.url, decode_responses=True))
        assert len(set(ids)) == 20 and all(store.get(j) is not None for j in ids)
    finally:
        ingest.stop()
    assert not any(running(pid) for pid in workers)


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False
