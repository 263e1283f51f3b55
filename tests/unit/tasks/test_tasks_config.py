"""The Celery configuration the reliability story depends on (behaviour is tested with real
workers in test_tasks*.py; these catch a setting silently dropped)."""

from __future__ import annotations

import pytest

from pipeline.constants import QUEUE_IO, QUEUE_LLM, QUEUE_POST, QUEUES, START_JOB_TASK
from pipeline.settings import Settings
from pipeline.stages import STAGE_NAMES, STAGES
from services.processes import free_port
from tasks.app import (
    ROUTES,
    celery_config,
    longest_time_limit,
    max_retry_countdown,
    queue_time_limits,
    visibility_timeout,
)
from tests.support.service import subprocess_env


def test_reliable_delivery_settings():
    settings = Settings(task_time_limit=300, task_retry_max_countdown=120)
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    transport = conf["broker_transport_options"]
    assert transport["unacked_restore_interval"] <= 5 and transport["unacked_restore_throttle"] <= 5
    assert visibility_timeout(Settings(celery_visibility_timeout=9)) == 9


def test_stage_routes_are_derived_from_the_stage_table_and_beat_replays_the_outbox():
    from tasks.app import app
    from tasks.stages import TASKS

    # every row of the table is a task of its own name, routed to its own queue
    assert [s.task_name for s in STAGES] == [f"technoshare.{name}" for name in STAGE_NAMES]
    assert {s.task_name: ROUTES[s.task_name] for s in STAGES} == {
        s.task_name: s.queue for s in STAGES
    }
    conf = celery_config(Settings())
    for stage in STAGES:
        assert conf["task_routes"][stage.task_name]["queue"] == stage.queue
        assert TASKS[stage.name].name == stage.task_name
        assert stage.task_name in app.tasks
    # and the table puts the network-bound stages on io, the model calls on llm
    io = {s.name for s in STAGES if s.queue == QUEUE_IO}
    llm = {s.name for s in STAGES if s.queue == QUEUE_LLM}
    post = {s.name for s in STAGES if s.queue == QUEUE_POST}
    assert (io, llm, post) == (
        {"fetch_evidence"}, {"stage_a", "stage_b"}, {"quality_gates", "slack_post"},
    )  # fmt: skip
    # the gates call the model only to repair a draft: that run has a task of its own on llm
    model_runs = {s.name: s.model_task_name for s in STAGES if s.model_queue}
    assert model_runs == {"quality_gates": "technoshare.quality_gates.model"}
    assert ROUTES["technoshare.quality_gates.model"] == QUEUE_LLM
    assert "technoshare.quality_gates.model" in app.tasks
    assert {s.name for s in STAGES if s.uses_llm} == llm | set(model_runs)

    replay = "technoshare.replay_mlflow_outbox"
    assert replay in {e["task"] for e in conf["beat_schedule"].values()}
    assert ROUTES[replay] == QUEUE_IO
    from tasks import lifecycle

    assert lifecycle.replay_mlflow_outbox.name == replay and replay in app.tasks


def test_the_weekly_eval_longer_than_the_visibility_timeout_is_acked_on_receipt():
    from tasks import scheduled
    from tasks.app import app

    app.loader.import_default_modules()
    eval_task = app.tasks[scheduled.WEEKLY_EVAL]
    assert eval_task.time_limit > visibility_timeout(Settings())
    assert eval_task.acks_late is False
    assert app.tasks["technoshare.stage_a"].acks_late is True
    assert set(scheduled.BEAT_SCHEDULE) <= set(app.conf.beat_schedule)


@pytest.mark.parametrize("tracking", ["false", "true"])
def test_the_io_workers_fetch_stage_reads_a_link_without_the_llm_or_mlflow_stack(tracking):
    """fetch_evidence runs on the io queue with the io worker's own dependencies
    (``tasks.runtime.worker_deps``): it builds the fetcher only (litellm takes seconds to
    import, and an io worker must not pay that on its first job), whether tracking is on or
    not (the recorder, not the stage, is what brings mlflow in)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pipeline.models import Job, JobCarry\n"
        "from pipeline.stages import fetch_evidence\n"
        "from tasks.runtime import worker_deps\n"
        "u = 'https://arxiv.org/abs/2101.04061'\n"
        "deps = worker_deps()\n"
        "ev = fetch_evidence(JobCarry(job=Job(job_id='j', url=u, canonical_url=u)), deps)\n"
        "print(ev.adapter, ev.coverage.value, len(ev.snippets) > 0,\n"
        "      type(deps.poster).__name__, type(deps.budget).__name__,\n"
        "      sorted(m for m in ('litellm', 'mlflow') if m in sys.modules))\n"
    )
    env = {
        **subprocess_env(),
        "FETCH_RECORDED": "true",
        "MLFLOW_ENABLE_TRACKING": tracking,
        "SLACK_SINK": "file",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # never connected to by a fetch
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0].split(" ", 5) == [
        "ArxivAdapter", "partial", "True", "IdempotentPoster", "RedisBudget", "[]",
    ]  # fmt: skip


def test_posting_has_a_queue_of_its_own_that_fetching_never_uses():
    """A slow site can hold every io process; the reply, the failure note and the starts (a
    repeat link's pointer is a post) are on `post`, which no fetch ever occupies."""
    conf = celery_config(Settings())
    assert {q.name for q in conf["task_queues"]} == set(QUEUES) == {"io", "llm", "post"}
    for name in ("technoshare.slack_post", "technoshare.job_failed", START_JOB_TASK,
                 "technoshare.reprocess"):  # fmt: skip
        assert conf["task_routes"][name] == {"queue": QUEUE_POST}, name
    on_post = {name for name, queue in ROUTES.items() if queue == QUEUE_POST}
    assert "technoshare.fetch_evidence" not in on_post


SETTINGS_CASES = [
    Settings(),
    Settings(llm_timeout=120, llm_max_retries=2),  # a slow model: limits and timeout follow
    Settings(fetch_total_timeout=90),
    Settings(slack_timeout=30, task_retry_max_countdown=300),
    Settings(task_time_limit=20, task_retry_max_countdown=5),
]


@pytest.mark.parametrize("settings", SETTINGS_CASES, ids=lambda s: f"vt{visibility_timeout(s)}")
def test_visibility_timeout_exceeds_the_longest_task_plus_the_longest_countdown(settings):
    """The invariant: a task (run to its hard limit, after the longest countdown a worker holds
    it for) is acked before Redis hands it out again, so a live worker's task never runs twice."""
    conf = celery_config(settings)
    annotated = [a["time_limit"] for a in conf["task_annotations"].values() if "time_limit" in a]
    longest = max([conf["task_time_limit"], *annotated])
    assert longest == longest_time_limit(settings)
    assert conf["broker_transport_options"]["visibility_timeout"] == visibility_timeout(settings)
    assert visibility_timeout(settings) > longest + max_retry_countdown(settings)
    for annotation in conf["task_annotations"].values():
        if "time_limit" in annotation:
            assert annotation["soft_time_limit"] < annotation["time_limit"]


@pytest.mark.parametrize("settings", SETTINGS_CASES, ids=lambda s: f"vt{visibility_timeout(s)}")
def test_each_stage_may_run_as_long_as_its_own_calls_are_bounded(settings):
    """fetch: two reads to FETCH_TOTAL_TIMEOUT; LLM: every attempt to LLM_TIMEOUT; post: a Slack
    call to SLACK_TIMEOUT; unless TASK_TIME_LIMIT caps them."""
    limits, cap = queue_time_limits(settings), settings.task_time_limit or 10**9
    assert limits[QUEUE_IO] >= min(cap, 2 * settings.fetch_total_timeout)
    assert limits[QUEUE_LLM] >= min(cap, settings.llm_timeout * (settings.llm_max_retries + 1))
    assert limits[QUEUE_POST] >= min(cap, 2 * settings.slack_timeout)
    assert max(limits.values()) <= cap
    conf = celery_config(settings)
    for name, queue in ROUTES.items():
        if "time_limit" in conf["task_annotations"].get(name, {}):
            assert conf["task_annotations"][name]["time_limit"] == limits[queue], name


def test_a_dead_nodes_tasks_come_back_in_about_a_minute_by_default():
    assert 60 <= visibility_timeout(Settings()) <= 90


def test_no_retry_countdown_outlives_the_visibility_timeout():
    """Retry-After of 10 minutes, or a visibility timeout set shorter than the defaults want:
    the countdown is cut to fit (a held retry past the timeout would be handed out twice)."""
    from pipeline.errors import SlackRateLimited
    from tasks.stages import retry_countdown

    for settings in [*SETTINGS_CASES, Settings(celery_visibility_timeout=30)]:
        for exc in (SlackRateLimited("429", retry_after=600), SlackRateLimited("x")):
            for retries in (0, 3, 10):
                countdown = retry_countdown(exc, retries, settings)
                assert 0 < countdown <= max_retry_countdown(settings)
                if not settings.celery_visibility_timeout:
                    assert countdown + longest_time_limit(settings) < visibility_timeout(settings)
    assert max_retry_countdown(Settings(celery_visibility_timeout=30)) < 30


def test_redis_blips_are_waited_out_by_publishes_and_nothing_waits_on_results():
    conf = celery_config(Settings())
    policy = conf["task_publish_retry_policy"]
    assert conf["task_publish_retry"] and conf["broker_connection_retry"]
    waits = [
        min(policy["interval_start"] + i * policy["interval_step"], policy["interval_max"])
        for i in range(policy["max_retries"])
    ]
    assert sum(waits) >= 15  # an 8 s Redis restart is covered, with room
    transport = conf["broker_transport_options"]
    assert 1 < transport["socket_timeout"] < 60 and transport["socket_connect_timeout"] < 60
    assert conf["result_backend_always_retry"] and conf["task_ignore_result"]


def test_later_stages_of_a_queue_are_served_first():
    """A job that has started is carried through before the next one starts (a burst finishes
    job by job): within each queue a later stage has a lower kombu priority number (Redis: 0
    is served first); tasks that are not stages keep the default."""
    from tasks.app import PRIORITY_STEPS, queue_keys, stage_tasks_on

    conf = celery_config(Settings())
    routes = conf["task_routes"]
    assert conf["broker_transport_options"]["priority_steps"] == list(PRIORITY_STEPS)
    for queue in QUEUES:
        on_queue = stage_tasks_on(queue)
        priorities = [routes[name].get("priority", 0) for name in on_queue]
        assert priorities == sorted(priorities, reverse=True) and priorities[-1] == 0, queue
        assert len(set(priorities)) == len(priorities), queue
        assert all(p in PRIORITY_STEPS for p in priorities)
    assert stage_tasks_on(QUEUE_LLM) == [
        "technoshare.stage_a", "technoshare.stage_b", "technoshare.quality_gates.model",
    ]  # fmt: skip
    llm = [routes[name].get("priority", 0) for name in stage_tasks_on(QUEUE_LLM)]
    assert llm == [6, 3, 0]  # a repair of a draft (its job nearly done) is served first
    for name in (START_JOB_TASK, "technoshare.job_failed", "technoshare.replay_mlflow_outbox"):
        assert "priority" not in routes[name]
    assert queue_keys(QUEUE_LLM) == ["llm", "llm\x06\x163", "llm\x06\x166", "llm\x06\x169"]


def test_task_events_are_off_unless_asked_for():
    """Events feed only a monitor (Flower enables them at the workers itself while it runs)."""
    quiet, monitored = celery_config(Settings()), celery_config(Settings(celery_task_events=True))
    assert not quiet["worker_send_task_events"] and not quiet["task_send_sent_event"]
    assert monitored["worker_send_task_events"] and monitored["task_send_sent_event"]
