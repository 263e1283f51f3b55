"""One fault run: a fresh real stack on loopback, jobs submitted through the ingest, a fault,
then the count of what Slack received per job and the recovery time.

- ``Run`` owns every process and server it starts (redis-server with AOF, the ingest, the io /
  llm / post celery workers, fake Slack) and stops them by PID in ``stop()``.
- Jobs go in as signed Events API requests to the real ingest (one link per message, one job
  each); the ingest answers with the job ids.
- Counting: a job's thread gets the commentary or the failure note; ``posted_once`` = exactly
  one accepted post in its thread, ``posted_twice`` = more than one; a job with no post counts
  as ended when its record is final with status failed (Slack never accepted it), else lost;
  a job that never reached a final status within the bound is lost.
- Recovery: from the end of the fault (``fault_over()``; for a permanent fault: the end of the
  submission) to the last job's final status, polled every 0.2 s.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from services.job_store import FINAL_STATUSES, JobStatus
from tests.support.fake_slack import FakeSlack
from tests.support.service import (
    BOT_TOKEN,
    CHANNEL,
    ROLES,
    Ingest,
    Stack,
    message_event,
    post_event,
    wait_until,
)

_ts = itertools.count(1)


@dataclass
class Result:
    name: str
    fault: str
    jobs: int = 0  # in flight when the fault hit (all of them were submitted before)
    submitted: int = 0
    posted_once: int = 0
    posted_twice: int = 0
    never_posted_ended: int = 0  # final, failed, nothing accepted by Slack
    lost: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    recovery_s: float | None = None
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    error: str = ""
    bound: str = ""  # the documented bound, when a scenario has one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Run:
    def __init__(self, name: str, tmp: Path, *, roles: tuple[str, ...] = ROLES,
                 llm_pool: str = "threads", llm_concurrency: int = 2,
                 _extra: dict[str, Any] | None = None, **env: str) -> None:  # fmt: skip
        self.name, self.tmp = name, tmp
        self.extra: dict[str, Any] = dict(_extra or {})  # scenario objects (a proxy, ...)
        self.roles, self.llm_pool, self.llm_concurrency = roles, llm_pool, llm_concurrency
        self.fake = FakeSlack(token=BOT_TOKEN).__enter__()
        self.stack: Stack | None = None
        self.ingest: Ingest | None = None
        self.ts_of: dict[str, str] = {}  # job id -> the message ts (= its reply thread)
        self.final_at: dict[str, float] = {}
        self.submitted_at: float | None = None
        self.fault_end: float | None = None
        try:
            self.stack = Stack(tmp, self.fake, durable_redis=True, **env)
        except BaseException:
            self.stop()
            raise

    @property
    def r(self) -> redis.Redis:
        assert self.stack is not None
        return self.stack.store.r

    def start(self) -> Run:
        assert self.stack is not None
        self.stack.start_workers(self.llm_pool, self.llm_concurrency, roles=self.roles)
        self.ingest = Ingest(self.stack.env, self.tmp)
        return self

    # --- jobs -------------------------------------------------------------------------------
    def submit(self, urls: list[str]) -> list[str]:
        """One signed message per URL through the real ingest; the ids it answers with."""
        assert self.ingest is not None
        ids = []
        base = int(time.time())
        for url in urls:
            n = next(_ts)
            ts = f"{base}.{n:06d}"
            payload = message_event(f"look at <{url}>", event_id=f"Ev{base}{n}", ts=ts)
            response = post_event(self.ingest.url, payload)
            assert response.status_code == 200, (response.status_code, response.text)
            [job_id] = response.json()["jobs"]
            self.ts_of[job_id] = ts
            ids.append(job_id)
        self.submitted_at = time.monotonic()
        return ids

    def fault_over(self) -> None:
        self.fault_end = time.monotonic()

    def _poll_final(self) -> bool:
        assert self.stack is not None
        now = time.monotonic()
        for job_id in self.ts_of:
            if job_id in self.final_at:
                continue
            with contextlib.suppress(redis.RedisError):  # Redis restarting: not yet
                record = self.stack.store.get(job_id)
                if record is not None and record.status in FINAL_STATUSES:
                    self.final_at[job_id] = now
        return len(self.final_at) == len(self.ts_of)

    def wait_final(self, timeout: float) -> bool:
        """Poll until every job is final (True) or ``timeout`` (False: the rest are lost)."""
        with contextlib.suppress(TimeoutError):
            wait_until(self._poll_final, timeout, "every job final", 0.2)
            return True
        return False

    def wait_some_final(self, n: int, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: self._poll_final() or len(self.final_at) >= n, timeout, "", 0.2)

    def count(self, result: Result) -> Result:
        assert self.stack is not None
        posts = Counter(
            p.get("thread_ts") for p in self.fake.posts() if p.get("channel") == CHANNEL
        )
        statuses: Counter[str] = Counter()
        for job_id, ts in self.ts_of.items():
            record = None
            with contextlib.suppress(redis.RedisError):
                record = self.stack.store.get(job_id)
            status = str(record.status) if record is not None else "missing"
            final = record is not None and record.status in FINAL_STATUSES
            statuses[status] += 1
            n = posts[ts]
            if n == 1:
                result.posted_once += 1
            elif n > 1:
                result.posted_twice += 1
            elif final and record is not None and record.status == JobStatus.failed:
                result.never_posted_ended += 1
            else:
                result.lost += 1
            if not final and n > 0:
                result.lost += 1  # posted, but its record never ended
        result.submitted = len(self.ts_of)
        result.statuses = dict(sorted(statuses.items()))
        start = self.fault_end if self.fault_end is not None else self.submitted_at
        if self.final_at and start is not None and len(self.final_at) == len(self.ts_of):
            result.recovery_s = round(max(0.0, max(self.final_at.values()) - start), 1)
        return result

    def statuses(self) -> Counter[str]:
        assert self.stack is not None
        return Counter(str(self.stack.store.require(j).status) for j in self.ts_of)

    def diagnostics(self) -> str:
        if self.stack is None:
            return ""
        with contextlib.suppress(Exception):
            return self.stack.diagnostics(list(self.ts_of))
        return ""

    # --- teardown ---------------------------------------------------------------------------
    def stop(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        if self.stack is not None:
            self.stack.stop()
        self.fake.__exit__(None, None, None)


def in_stage_a(run: Run) -> int:
    """Jobs inside the stand-in stage_a (it counts its runs per URL, then sleeps)."""
    return len(run.r.keys("test:stage_a_runs:*"))


@dataclass
class Scenario:
    name: str
    fault: str  # one line: what is done
    body: Callable[[Run, Any], None]  # submits, injects, calls run.fault_over()
    run_args: Callable[[Any], dict[str, Any]]  # resources -> Run(**kwargs)
    jobs: int = 6
    fast: bool = False
    bound_s: float = 240.0  # hard bound of the whole scenario, set-up included
    wait_s: float = 150.0  # for the jobs to end, after the body
    expect: Callable[[Result], str | None] | None = None  # extra check: a problem or None
    after: Callable[[Result, Run], None] | None = None  # measures more once the jobs ended
    run_kwargs: dict[str, Any] = field(default_factory=dict)  # llm_pool, roles, ...
    documented_bound: str = ""  # when set, twice/lost above 0 are reported, not failed

    def check(self, result: Result) -> list[str]:
        problems = []
        if result.submitted != self.jobs:
            problems.append(f"submitted {result.submitted} of {self.jobs}")
        if not self.documented_bound:
            if result.posted_twice:
                problems.append(f"{result.posted_twice} job(s) posted twice")
            if result.lost:
                problems.append(f"{result.lost} job(s) lost")
        if self.expect is not None:
            problem = self.expect(result)
            if problem:
                problems.append(problem)
        return problems


def all_posted(result: Result) -> str | None:
    if (
        result.statuses.get("posted", 0) != result.submitted
        or result.posted_once != result.submitted
    ):
        return f"expected every job posted once with status posted, got {result.statuses}"
    return None


def none_failed(result: Result) -> str | None:
    if result.statuses.get("failed", 0):
        return f"expected no job to fail, got {result.statuses}"
    return None


def all_ended_with_a_note(result: Result) -> str | None:
    if result.posted_once != result.submitted:
        return f"expected a reply or a failure note in every thread, got {result.statuses}"
    return None


def execute(scenario: Scenario, resources: Any, tmp: Path) -> Result:
    """Set up, run the scenario body, wait for the jobs, count, stop everything."""
    result = Result(scenario.name, scenario.fault, jobs=scenario.jobs,
                    bound=scenario.documented_bound)  # fmt: skip
    started = time.monotonic()
    run: Run | None = None
    try:
        kwargs = {**scenario.run_args(resources), **scenario.run_kwargs}
        run = Run(scenario.name, tmp, **kwargs).start()
        scenario.body(run, resources)
        if run.fault_end is None and run.submitted_at is None:
            raise RuntimeError("the scenario submitted nothing")
        run.wait_final(scenario.wait_s)
        run.count(result)
        if scenario.after is not None:
            scenario.after(result, run)
        problems = scenario.check(result)
        result.ok = not problems
        result.error = "; ".join(problems)
        if problems:
            (tmp / "diagnostics.txt").write_text(run.diagnostics())
    except BaseException as exc:
        if run is not None:
            with contextlib.suppress(Exception):
                run.count(result)
            with contextlib.suppress(Exception):
                (tmp / "diagnostics.txt").write_text(run.diagnostics())
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc}"[:2000]
        if not isinstance(exc, Exception):
            raise
    finally:
        if run is not None:
            run.stop()
        result.duration_s = round(time.monotonic() - started, 1)
    if result.ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        result.extra["logs"] = str(tmp)
    return result


def table(results: list[Result]) -> str:
    head = ("scenario", "jobs", "submitted", "once", "twice", "ended unposted", "lost",
            "recovery s", "total s", "ok")  # fmt: skip
    rows = [head]
    for r in results:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        rows.append((r.name, str(r.jobs), str(r.submitted), str(r.posted_once),
                     str(r.posted_twice), str(r.never_posted_ended), str(r.lost), rec,
                     f"{r.duration_s:.0f}", "ok" if r.ok else "FAIL"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if not r.ok:
            lines.append(f"{r.name}: {r.error}")
    return "\n".join(lines)


def dump(results: list[Result], path: Path) -> None:
    path.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
