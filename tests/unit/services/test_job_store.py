"""The job store on a real redis-server: records, attempts, idempotency keys, dedupe keys."""

from __future__ import annotations

import pytest

from pipeline.constants import JOB_KEY, JOB_SEEN_KEY, JOB_SEEN_TTL_SECONDS, LINK_CLAIM_TTL_SECONDS
from pipeline.errors import JobNotFoundError
from pipeline.models import Job
from services.job_store import JobStatus, JobStore


def _job(job_id: str = "j1", url: str = "https://example.com/a") -> Job:
    return Job(job_id=job_id, channel_id="C1", message_ts="1.1", url=url, canonical_url=url)


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client)


def test_create_is_once_and_round_trips_the_job(store):
    job = _job()
    assert store.create(job)
    assert not store.create(job.model_copy(update={"url": "https://other.example/"}))
    record = store.require("j1")
    assert record.job == job
    assert record.status == JobStatus.queued
    assert record.attempt == 0
    assert store.r.ttl("ts:job:j1") > 0


def test_unknown_job_raises_and_updates_create_nothing(store):
    with pytest.raises(JobNotFoundError):
        store.require("nope")
    store.set_status("nope", JobStatus.failed, error="x")
    store.record_error("nope", "boom")
    assert not store.r.exists("ts:job:nope")


def test_attempts_survive_redelivery_of_the_same_start_message(store):
    store.create(_job())
    assert store.begin_attempt("j1", "task-1") == (1, True)
    assert store.begin_attempt("j1", "task-1") == (1, False)  # redelivered
    assert store.begin_attempt("j1", "task-2") == (2, True)  # a reprocess
    assert store.require("j1").status == JobStatus.running


def test_replies_are_recorded_per_attempt(store):
    store.create(_job())
    assert store.reply_for("j1", 1) is None
    store.record_reply("j1", 1, "111.1")
    store.record_reply("j1", 2, "222.2")
    record = store.require("j1")
    assert record.replies == {1: "111.1", 2: "222.2"}
    assert record.reply_ts == "222.2"


def test_post_lock_is_exclusive_and_released_only_by_its_owner(store):
    assert store.acquire_post_lock("j1", 1, "a")
    assert not store.acquire_post_lock("j1", 1, "b")
    assert store.acquire_post_lock("j1", 2, "b")  # another attempt
    store.release_post_lock("j1", 1, "b")  # not b's lock
    assert not store.acquire_post_lock("j1", 1, "b")
    store.release_post_lock("j1", 1, "a")
    assert store.acquire_post_lock("j1", 1, "b")


def test_seen_headers_errors_and_run(store):
    store.create(_job())
    store.set_run("j1", {"ts_parent_run_id": "run1"}, "run1", reprocess_of="run0")
    store.record_seen("j1", "stage_a", {"ts_parent_run_id": "run1"}, attempt=1, task_id="t")
    store.record_error("j1", "FetchNetworkError: reset", "The source could not be reached.")
    record = store.require("j1", with_seen=True)
    assert record.parent_run_id == "run1" and record.reprocess_of == "run0"
    assert record.headers == {"ts_parent_run_id": "run1"}
    assert record.seen["stage_a"]["headers"] == {"ts_parent_run_id": "run1"}
    assert store.require("j1").seen == {}  # the stages' view is read only when asked for
    # kept apart, for a day: the record itself stays small (a listpack-sized hash)
    seen_key = JOB_SEEN_KEY.format(job_id="j1")
    assert 0 < store.r.ttl(seen_key) <= JOB_SEEN_TTL_SECONDS
    assert not any(field.startswith("seen") for field in store.r.hkeys(JOB_KEY.format(job_id="j1")))
    assert record.last_error.startswith("FetchNetworkError")
    assert record.user_error == "The source could not be reached."


def test_event_and_message_link_claims_are_first_wins(store):
    assert store.claim_event("Ev1")
    assert not store.claim_event("Ev1")
    store.release_event("Ev1")
    assert store.claim_event("Ev1")
    assert store.claim_message_link("C1", "1.1", "https://a/")
    assert not store.claim_message_link("C1", "1.1", "https://a/")
    assert store.claim_message_link("C1", "1.2", "https://a/")


def test_repeat_link_memory_expires_with_the_window(store):
    store.remember_answer("C1", "https://a/", "j1", days=7)
    assert store.earlier_answer("C1", "https://a/") == "j1"
    assert store.earlier_answer("C2", "https://a/") is None
    ttl = store.r.ttl(next(iter(store.r.scan_iter("ts:chanurl:*"))))
    assert 6 * 86400 < ttl <= 7 * 86400
    store.remember_answer("C1", "https://b/", "j2", days=0)  # window off
    assert store.earlier_answer("C1", "https://b/") is None


def test_a_link_claim_is_first_wins_and_ends_with_the_answer_or_a_release(store):
    assert store.claim_link("C1", "https://a/", "j1") == "j1"
    assert store.claim_link("C1", "https://a/", "j1") == "j1"  # a redelivered start keeps it
    assert store.claim_link("C1", "https://a/", "j2") == "j1"  # held: j2 learns who holds it
    assert store.claim_link("C2", "https://a/", "j3") == "j3"  # another channel
    ttl = store.r.ttl(next(iter(store.r.scan_iter("ts:linkclaim:C1:*"))))
    assert 0 < ttl <= LINK_CLAIM_TTL_SECONDS
    store.release_link("C1", "https://a/", "j2")  # not j2's claim
    assert store.claim_link("C1", "https://a/", "j2") == "j1"
    store.remember_answer("C1", "https://a/", "j1", days=7)  # answered: memory replaces claim
    assert store.earlier_answer("C1", "https://a/") == "j1"
    assert store.claim_link("C1", "https://a/", "j2") == "j2"
    store.release_link("C1", "https://a/", "j2")  # failed: the link may be tried again
    assert store.claim_link("C1", "https://a/", "j4") == "j4"


def test_a_stale_link_claim_is_taken_over_once(store):
    assert store.claim_link("C1", "https://a/", "j1") == "j1"
    assert store.take_over_link("C1", "https://a/", "j1", "j2")
    assert not store.take_over_link("C1", "https://a/", "j1", "j3")  # j2 was first
    assert store.claim_link("C1", "https://a/", "j3") == "j2"


def test_post_start_time_is_the_first_one(store):
    store.create(_job())
    assert store.post_started_at("j1", 1) is None
    store.mark_post_started("j1", 1)
    first = store.post_started_at("j1", 1)
    store.mark_post_started("j1", 1)  # a retry does not move it later
    assert first and store.post_started_at("j1", 1) == first and store.post_started("j1", 1)
    store.mark_post_started("nope", 1)  # no half record for an unknown job
    assert not store.r.exists("ts:job:nope")
