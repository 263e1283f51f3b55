"""Recording for the drivers that run every stage in this process (``technoshare run``, demo).

    with local_recording(settings) as recorder:
        run_job(job, deps, recorder)

Installs the MLflow recorder with a local ledger and a file outbox under STATE_DIR (or the
null recorder with ``MLFLOW_ENABLE_TRACKING=false``), writes what earlier runs kept in that
outbox, and at the end waits for this run's records. What still could not be written stays
in the outbox file and is said on stderr, with where it is kept: the next run writes it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from observability.recorder import Recorder, install_recorder
from pipeline.settings import Settings

FLUSH_SECONDS = 30.0


@contextmanager
def local_recording(settings: Settings) -> Iterator[Recorder]:
    from observability.backend import MlflowRecorder
    from observability.setup import configure, warm_up

    # keep: the in-process worker of `technoshare demo` must not swap it for a Redis one
    recorder = configure(settings, local=True, keep=True)
    if isinstance(recorder, MlflowRecorder):
        warm_up(recorder)
        kept, _ = recorder.kept_records()
        if kept > 0:
            recorder.replay_outbox()
    try:
        yield recorder
    finally:
        recorder.flush(FLUSH_SECONDS)
        recorder.close()
        if isinstance(recorder, MlflowRecorder):
            report_kept(recorder)
        install_recorder(None)


def report_kept(recorder: Recorder) -> None:
    from observability.backend import MlflowRecorder

    if not isinstance(recorder, MlflowRecorder):
        return
    kept, where = recorder.kept_records()
    if kept > 0:
        recorder.replay_outbox()
        kept, where = recorder.kept_records()
    if kept > 0:
        reason = recorder.runtime.health.reason or "MLflow did not answer"
        print(
            f"MLflow: {kept} record(s) not written yet ({reason}); kept in {where}: "
            "the next `technoshare run` or `technoshare demo` with MLflow up writes them.",
            file=sys.stderr,
        )
