"""👍/👎 on the bot's replies, end to end: real redis-server, `celery worker` processes running
the real pipeline on the recorded web, a real `mlflow server`, fake Slack, the ingest server.

A reaction event becomes a `user_reaction` assessment (source = the Slack user) on the trace of
the job whose reply was reacted to, once; then `technoshare eval add-from-feedback` turns the 👎
job into a dataset example with its source recorded, and that example runs offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.feedback import FEEDBACK_NAME
from pipeline.settings import Settings
from services.feedback import celery_feedback_sender, reaction_feedback
from tests.support.mlflow_server import (
    client_and_experiment,
    the_trace,
    wait_for_job,
)
from tests.support.service import (
    CHANNEL,
    Ingest,
    Stack,
    post_event,
    subprocess_env,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.mlflow_server]

REPO = Path(__file__).resolve().parents[2]
ARXIV = "https://arxiv.org/abs/2103.17249"
GITHUB = "https://github.com/rushter/selectolax"
PAGE = "https://hakibenita.com/sql-anomaly-detection"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack, mlflow_server):
    tmp = tmp_path_factory.mktemp("feedback-e2e")
    s = Stack(
        tmp,
        fake_slack,
        FETCH_RECORDED="true",
        LLM_MODEL="offline/extractive",
        MLFLOW_TRACKING_URI=mlflow_server.url,
    )
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    patch.setenv("REDIS_URL", s.redis.url)
    patch.setenv("STATE_DIR", str(tmp / "state"))
    try:
        s.start_workers()
        s.ingest = Ingest(s.env, tmp)
        s.workers.append(s.ingest)
        yield s
    finally:
        s.stop()
        patch.undo()


@pytest.fixture(scope="module")
def jobs(stack, mlflow_server):
    ids = {
        "arxiv": stack.submit(ARXIV, ts="1700000300.000100"),
        "github": stack.submit(GITHUB, ts="1700000300.000200"),
        "page": stack.submit(PAGE, ts="1700000300.000300"),
    }
    stack.wait_final(list(ids.values()), timeout=180)
    client, exp_id = client_and_experiment(mlflow_server.url)
    for job_id in ids.values():
        wait_for_job(client, exp_id, job_id, 5)  # parent run ended: it carries reply_ts
    return ids


def _reaction(reply_ts: str, reaction: str, user: str) -> dict:
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item": {"type": "message", "channel": CHANNEL, "ts": reply_ts},
        "item_user": "UBOT",
        "event_ts": "1700000400.000100",
    }


def _reactions_on(mlflow_server, job_id: str) -> list:
    _, exp_id = client_and_experiment(mlflow_server.url)
    trace = the_trace(exp_id, mlflow_server.url, job_id, 6)
    return [a for a in trace.info.assessments if a.name == FEEDBACK_NAME]


def _wait_reactions(mlflow_server, job_id: str, n: int) -> list:
    def found():
        got = _reactions_on(mlflow_server, job_id)
        return got if len(got) >= n else None

    return wait_until(found, 60, f"{n} reaction(s) on the trace of {job_id}", 0.5)


def test_reaction_parsing_keeps_thumbs_on_bot_messages_only():
    event = _reaction("1.2", "-1::skin-tone-3", "U0BOB")
    assert reaction_feedback(event, "UBOT") == {
        "channel": CHANNEL, "reply_ts": "1.2", "user": "U0BOB", "positive": False, "reaction": "-1"
    }  # fmt: skip
    assert reaction_feedback({**event, "reaction": "thumbsup"}, "UBOT")["positive"] is True
    assert reaction_feedback({**event, "reaction": "eyes"}, "UBOT") is None
    assert reaction_feedback({**event, "item_user": "U0ALICE"}, "UBOT") is None
    assert reaction_feedback({**event, "type": "reaction_removed"}, "UBOT") is None
    assert reaction_feedback({**event, "user": "UBOT"}, "UBOT") is None


def test_thumbs_down_becomes_feedback_on_the_right_trace_once(stack, jobs, mlflow_server):
    reply = stack.store.require(jobs["arxiv"]).reply_ts
    assert reply
    send = celery_feedback_sender(Settings(redis_url=stack.redis.url))
    kwargs = reaction_feedback(_reaction(reply, "-1", "U0BOB"), "UBOT")
    send(kwargs)
    send(kwargs)  # a duplicate delivery records nothing more
    (feedback,) = _wait_reactions(mlflow_server, jobs["arxiv"], 1)
    assert feedback.value is False
    assert feedback.source.source_type == "HUMAN" and feedback.source.source_id == "U0BOB"
    assert feedback.metadata["job_id"] == jobs["arxiv"]
    assert _reactions_on(mlflow_server, jobs["github"]) == []  # not on another job's trace

    client, exp_id = client_and_experiment(mlflow_server.url)
    run = wait_for_job(client, exp_id, jobs["arxiv"], 5)
    assert client.get_run(run.info.run_id).data.tags["user_feedback"] == "negative"


def test_reaction_event_through_the_ingest_server(stack, jobs, mlflow_server):
    """The Slack event as delivered: signed POST to the ingest, which publishes the task."""
    reply = stack.store.require(jobs["github"]).reply_ts
    payload = {
        "type": "event_callback",
        "event_id": "EvFEEDBACK1",
        "event": _reaction(reply, "+1", "U0CAROL"),
    }
    assert post_event(stack.ingest.url, payload).status_code == 200
    (feedback,) = _wait_reactions(mlflow_server, jobs["github"], 1)
    assert feedback.value is True and feedback.source.source_id == "U0CAROL"


def _cli(tmp: Path, mlflow_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env("LLM_")
    env.update(
        APP_ENV="test",
        MLFLOW_TRACKING_URI=mlflow_url,
        STATE_DIR=str(tmp / "state"),
        FETCH_RECORDED="true",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_OFFLINE_MODE="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONPATH=str(REPO),
    )
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "eval", *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip


def test_add_from_feedback_records_the_source_and_the_example_runs_offline(
    stack, jobs, mlflow_server, tmp_path
):
    reply = stack.store.require(jobs["page"]).reply_ts
    celery_feedback_sender(Settings(redis_url=stack.redis.url))(
        reaction_feedback(_reaction(reply, "thumbsdown", "U0DAN"), "UBOT")
    )
    _wait_reactions(mlflow_server, jobs["page"], 1)
    _wait_reactions(mlflow_server, jobs["arxiv"], 1)  # the 👎 of the test above

    dataset = tmp_path / "dataset.json"
    source = json.loads((REPO / "data" / "eval_dataset.json").read_text(encoding="utf-8"))
    dataset.write_text(json.dumps({"version": 1, "examples": source["examples"][3:4]}), "utf-8")
    recorded = tmp_path / "recorded"
    args = ("add-from-feedback", "--dataset", str(dataset), "--recorded-dir", str(recorded))
    proc = _cli(tmp_path, mlflow_server.url, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    added = {e["url"]: e for e in json.loads(dataset.read_text("utf-8"))["examples"][1:]}
    assert set(added) == {ARXIV, PAGE}  # the 👎 jobs; not the 👍 one
    paper, page = added[ARXIV], added[PAGE]
    assert paper["status"] == "needs_review" and paper["recorded"] == {
        "kind": "arxiv",
        "id": "2103.17249",
    }
    assert paper["expected_themes"] == [] and paper["must_mention"]
    title = "StyleCLIP: Text-Driven Manipulation of StyleGAN Imagery"
    assert all(term in title for term in paper["must_mention"])  # suggested from the title
    assert paper["message_text"].startswith(f"<{ARXIV}")
    record = json.loads((recorded / "arxiv" / "2103.17249.json").read_text("utf-8"))
    original = json.loads((REPO / "data/recorded/arxiv/2103.17249.json").read_text("utf-8"))
    for key in ("title", "authors", "abstract", "categories", "published"):
        assert record[key] == original[key], key
    manifest = {
        (e["kind"], e["id"]): e for e in json.loads((recorded / "manifest.json").read_text())
    }
    page_entry = manifest[("page", page["recorded"]["id"])]
    assert page_entry["url"] == PAGE
    assert (recorded / page_entry["path"] / "source.html").read_bytes() == (
        REPO / "data/recorded/pages/toc-missing/source.html"
    ).read_bytes()

    # a person labels the examples; they now run offline from the new recording alone
    raw = json.loads(dataset.read_text("utf-8"))
    for example in raw["examples"][1:]:
        example.update(status="ready", expected_themes=["General"])
    dataset.write_text(json.dumps(raw), "utf-8")
    ids = ",".join(e["id"] for e in raw["examples"][1:])
    proc = _cli(tmp_path, mlflow_server.url, "--dataset", str(dataset), "--recorded-dir",
                str(recorded), "--ids", ids, "--min-pass-rate", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for example in raw["examples"][1:]:
        line = next(line for line in proc.stdout.splitlines() if line.startswith(example["id"]))
        assert line.split()[1] in ("success", "gate_failed"), line  # read, not an error
