"""``technoshare reprocess JOB_ID [--wait SECONDS]``: re-run a job by id.

Publishes ``technoshare.reprocess`` (the same entry point as
``celery -A tasks call technoshare.reprocess --args='["JOB_ID"]'``): the job record is reused,
a new attempt and a new parent run linked to the old one start, and the reply goes to the same
thread. Exit codes: 0 done (or queued without --wait), 1 error/unknown job, 3 gate_failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from pipeline.settings import get_settings
from services.job_store import FINAL_STATUSES, JobStatus, JobStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the job id (ingest logs it; MLflow tag job_id)")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the new attempt to finish and print its outcome",
    )


def main(args: argparse.Namespace) -> int:
    from tasks.app import create_app

    settings = get_settings()
    store = JobStore.from_settings(settings)
    record = store.get(args.job_id)
    if record is None:
        print(f"error: no job {args.job_id!r} in Redis ({settings.redis_url})", file=sys.stderr)
        return 1
    client = create_app(settings)
    result = client.send_task("technoshare.reprocess", args=[args.job_id])
    print(f"queued reprocess of job {args.job_id} (attempt {record.attempt + 1}); task {result.id}")
    if args.wait <= 0:
        return 0
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        now = store.require(args.job_id)
        if now.attempt > record.attempt and now.status in FINAL_STATUSES:
            print(
                f"{now.status}: reply {now.reply_ts or '-'}"
                + (f" ({now.last_error})" if now.status == JobStatus.failed else "")
            )
            if now.status == JobStatus.gate_failed:
                return 3
            return 1 if now.status == JobStatus.failed else 0
        time.sleep(0.2)
    print(
        f"error: attempt {record.attempt + 1} not finished after {args.wait:.0f}s", file=sys.stderr
    )
    return 1
