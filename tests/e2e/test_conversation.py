"""End to end, the bot in conversation, on real processes: redis-server, the ingest HTTP server,
io/llm/post workers running the real pipeline with the offline model on the recorded web, MLflow
on a local sqlite store, a fake Slack. One channel, in order: a link is answered; a related link
in another thread is answered with "Shared before" pointing to the first thread; a question to
the bot in the first thread is answered from that job's evidence, citing it; a question the
source cannot answer gets "the source does not say"; a bare mention gets the help line; the
digest lists both links."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from pipeline.followup import DOES_NOT_SAY
from pipeline.render_thread import HELP_TEXT
from pipeline.settings import Settings
from services.history_store import RedisHistory
from services.recorded_web import serve_recorded
from tests.support.service import CHANNEL, message_event, post_event, running_stack, wait_until

pytestmark = pytest.mark.e2e

FIRST = "https://github.com/redis/redis-py"
RELATED = "https://github.com/cunla/fakeredis"


@pytest.fixture(scope="module")
def web():
    with serve_recorded() as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack, web):
    tmp = tmp_path_factory.mktemp("conversation")
    with running_stack(
        tmp, fake_slack, LLM_MODEL="offline/extractive", **web.settings_overrides()
    ) as s:
        yield s


def mention(text: str, *, event_id: str, ts: str, thread_ts: str | None = None) -> dict:
    fields = {"thread_ts": thread_ts} if thread_ts else {}
    payload = message_event(text, event_id=event_id, ts=ts, **fields)
    payload["event"]["type"] = "app_mention"
    return payload


def replies_in(fake, thread_ts: str) -> list[dict]:
    return [p for p in fake.posts() if p.get("thread_ts") == thread_ts]


def reply_text(post: dict) -> str:
    return str(post.get("text") or "")


def wait_reply(stack, thread_ts: str, count: int = 1, timeout: float = 90) -> list[dict]:
    def arrived():
        found = replies_in(stack.fake, thread_ts)
        return found if len(found) >= count else None

    try:
        return wait_until(arrived, timeout, f"{count} replies in thread {thread_ts}", 0.2)
    except TimeoutError:
        logs = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in stack.workers)
        raise AssertionError(f"posts: {stack.fake.posts()}\n{logs}") from None


def test_shared_before_followups_help_and_digest(stack, fake_slack):
    base = stack.ingest.url
    assert post_event(base, message_event(f"<{FIRST}>", event_id="Ev1", ts="1700000100.000100")).status_code == 200  # fmt: skip
    first_reply = wait_reply(stack, "1700000100.000100")[0]
    assert "Shared before" not in reply_text(first_reply)

    # a related link, in another thread: its reply points to the first thread
    assert post_event(base, message_event(f"<{RELATED}>", event_id="Ev2", ts="1700000200.000100")).status_code == 200  # fmt: skip
    second = reply_text(wait_reply(stack, "1700000200.000100")[0])
    first_thread_link = f"https://fake.slack.test/archives/{CHANNEL}/p{first_reply['ts'].replace('.', '')}"  # fmt: skip
    assert re.search(rf"Shared before: <{re.escape(first_thread_link)}\|redis/redis-py> \((today|yesterday|\d+ days ago)\)", second), second  # fmt: skip

    # a question in the first thread: answered from redis-py's evidence, citing it
    history = RedisHistory.from_settings(Settings(redis_url=stack.redis.url))
    [first_job] = history.thread_jobs(CHANNEL, "1700000100.000100")
    [archive] = history.archives([first_job])
    question = mention("<@UBOT> does it support Redis Cluster and Sentinel?", event_id="Ev3",
                       ts="1700000100.000500", thread_ts="1700000100.000100")  # fmt: skip
    assert post_event(base, question).status_code == 200
    answer = reply_text(wait_reply(stack, "1700000100.000100", count=2)[1])
    quotes = re.findall(r"“(.+?)” \[(S\d+|F\d+)\]", answer)
    assert quotes, answer
    by_id = {s.id: s.text for s in archive.snippets} | {
        f"F{i}": f.text for i, f in enumerate(archive.facts.key_facts, 1)
    }
    for quoted, cited in quotes:  # each quote opens as the cited passage does
        assert " ".join(quoted.split())[:60] in " ".join(by_id[cited].split()), (quoted, cited)
    assert "cluster" in answer.lower()

    # a question the source cannot answer: said plainly
    odd = mention("<@UBOT> what did the authors eat for breakfast?", event_id="Ev4",
                  ts="1700000100.000700", thread_ts="1700000100.000100")  # fmt: skip
    assert post_event(base, odd).status_code == 200
    assert DOES_NOT_SAY in reply_text(wait_reply(stack, "1700000100.000100", count=3)[2])

    # a bare mention outside the bot's threads: the help line, in the mention's thread
    bare = mention("<@UBOT>", event_id="Ev5", ts="1700000300.000100")
    assert post_event(base, bare).status_code == 200
    assert reply_text(wait_reply(stack, "1700000300.000100")[0]) == HELP_TEXT

    # Slack retrying the question delivers nothing twice
    assert post_event(base, question, **{"X-Slack-Retry-Num": "1"}).status_code == 200
    stack.wait_idle()
    assert len(replies_in(fake_slack, "1700000100.000100")) == 3

    # the follow-up is its own small run, linked to the first job's run
    first_record = stack.store.require(first_job)
    assert first_record.parent_run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{stack.tmp / 'state' / 'mlflow.db'}")
    followups = f"tags.followup_of = '{first_record.parent_run_id}'"

    def both_recorded():
        runs = client.search_runs(
            [client.get_experiment_by_name("technoshare_commentator").experiment_id], followups
        )
        return runs if len(runs) == 2 else None  # the two questions

    runs = wait_until(both_recorded, 60, "the follow-up runs in MLflow", 0.5)
    nested = client.search_runs(
        [runs[0].info.experiment_id], f"tags.mlflow.parentRunId = '{runs[0].info.run_id}'"
    )
    assert [r.info.run_name for r in nested] == ["followup_answer"]  # fmt: skip

    # the digest lists both links under the team's themes
    out = subprocess.run(
        [sys.executable, "-c", "from services.cli import main; raise SystemExit(main())",
         "digest", "--channel", CHANNEL],
        env=stack.env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "redis/redis-py" in out and "cunla/fakeredis" in out, out
