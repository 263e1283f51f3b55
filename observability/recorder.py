"""The one public seam of observability: a ``Recorder``, a way to install one, a null one.

    recorder = get_recorder()                            # what the process installed
    headers = recorder.begin_job(job)                    # parent run + trace ids; never raises
    with recorder.stage(STAGE_BY_NAME["stage_a"], job, headers) as obs:
        carry = advance(stage, carry, deps)              # nested run + span around the stage
        obs.output = carry.facts
    recorder.end_job(job, headers, outcome, reply=message, error=None)

``headers`` are the task headers to propagate (``pipeline.constants.PROPAGATED_HEADERS``):
the parent run id and the W3C trace context. Every driver (Celery tasks, ``technoshare run``,
demo, eval) records through this seam; ``observability.setup.configure`` installs the MLflow
recorder or the null one, and tests install a recording double with ``install_recorder`` (or
the ``recording`` context manager), never by assigning module attributes.

This module imports nothing heavy: the ingest process may import it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.models import Job, Outcome, SlackMessage
from pipeline.stages import Stage


@dataclass
class StageObservation:
    """Filled by the driver while its stage runs; recorded when the stage ends. The standard
    metrics, tags, span attributes and the artifact are derived from ``output`` (the stage's
    model); ``tags``/``metrics``/``params`` hold the few values that exist nowhere else."""

    stage: Stage
    output: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Feedback:
    """A 👍/👎 on one of the bot's replies, to record on that job attempt's trace."""

    channel: str
    reply_ts: str
    user: str
    positive: bool
    reaction: str


class Recorder(Protocol):
    def begin_job(
        self, job: Job, *, reprocess_of: str | None = None, followup_of: str | None = None
    ) -> dict[str, str]: ...

    def stage(
        self, stage: Stage, job: Job, headers: Mapping[str, str]
    ) -> AbstractContextManager[StageObservation]: ...

    def end_job(
        self,
        job: Job,
        headers: Mapping[str, str],
        outcome: Outcome,
        *,
        reply: SlackMessage | None = None,
        error: str | None = None,
    ) -> None: ...

    def parent_run_id(self, job: Job, headers: Mapping[str, str]) -> str: ...

    def record_feedback(self, feedback: Feedback) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self, timeout: float = 5.0) -> None: ...


class NullRecorder:
    """Records nothing (``MLFLOW_ENABLE_TRACKING=false``, the ingest, unit tests)."""

    def begin_job(
        self, job: Job, *, reprocess_of: str | None = None, followup_of: str | None = None
    ) -> dict[str, str]:
        from pipeline.constants import HEADER_JOB_ID

        return {HEADER_JOB_ID: job.job_id}

    @contextmanager
    def stage(self, stage: Stage, job: Job, headers: Mapping[str, str]) -> Iterator[Any]:
        yield StageObservation(stage=stage)

    def end_job(
        self,
        job: Job,
        headers: Mapping[str, str],
        outcome: Outcome,
        *,
        reply: SlackMessage | None = None,
        error: str | None = None,
    ) -> None:
        return None

    def parent_run_id(self, job: Job, headers: Mapping[str, str]) -> str:
        return ""

    def record_feedback(self, feedback: Feedback) -> None:
        return None

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        return None


_lock = threading.Lock()
_installed: Recorder | None = None
_kept = False


def install_recorder(recorder: Recorder | None, *, keep: bool = False) -> Recorder | None:
    """Make ``recorder`` the process's recorder (None: back to the null one); returns the
    previous one, which the caller closes if it is done with it. ``keep=True``: a process that
    embeds the workers (or a test) chose its recorder, and ``kept_recorder()`` tells the worker
    start-up not to replace it."""
    global _installed, _kept
    with _lock:
        previous, _installed, _kept = _installed, recorder, keep and recorder is not None
    return previous


def kept_recorder() -> bool:
    return _kept


def get_recorder() -> Recorder:
    return _installed if _installed is not None else NULL_RECORDER


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Install ``recorder`` for the block, then put the previous one back (tests)."""
    previous = install_recorder(recorder)
    try:
        yield recorder
    finally:
        install_recorder(previous)


NULL_RECORDER = NullRecorder()
