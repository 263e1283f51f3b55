"""``technoshare run URL [--json] [--recorded]``: the whole pipeline in-process on one link,
recorded in MLflow like a worker's job.

Prints the Slack reply as readable text (``--json``: the full PipelineResult). Exit codes:
0 success, 3 gate_failed, 1 error (one-line reason on stderr). ``--recorded`` serves every
request from the repository's recorded web data, so recorded URLs work fully offline.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import TechnoShareError
from pipeline.models import Job, Outcome, PipelineResult, SlackMessage

EXIT_OK, EXIT_ERROR, EXIT_GATE_FAILED = 0, 1, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the link to comment on")
    parser.add_argument("--json", action="store_true", help="print the full PipelineResult JSON")
    parser.add_argument(
        "--recorded",
        action="store_true",
        help="serve every request from the recorded web data (offline; also FETCH_RECORDED=true)",
    )


def make_cli_job(url: str) -> Job:
    from pipeline.links import canonical_url, normalize_url

    url = url.strip()
    canonical = canonical_url(url)
    stamp = f"{time.time():.6f}"
    return Job(
        job_id=Job.make_id("cli", stamp, canonical),
        channel_id="cli",
        message_ts=stamp,
        message_text=url,  # the "message": links in it may be quoted in the reply
        url=normalize_url(url),
        canonical_url=canonical,
    )


def readable_text(message: SlackMessage) -> str:
    """Slack mrkdwn -> terminal text: ``<url|label>`` becomes ``label (url)``, entities undone."""

    def link(m: re.Match[str]) -> str:
        url, _, label = m.group(1).partition("|")
        return f"{label} ({url})" if label else url

    return html.unescape(re.sub(r"<([^<>]+)>", link, message.text))


def run(url: str, *, recorded: bool = False) -> PipelineResult:
    """The whole pipeline on ``url`` in this process, recorded like a worker's job (parent run
    ``job-<id>``, 5 nested runs, one trace) in the configured MLflow store: by default the
    local sqlite store under STATE_DIR; nothing with ``MLFLOW_ENABLE_TRACKING=false``."""
    from pipeline.settings import get_settings
    from services.local_recording import local_recording
    from services.runner import run_job
    from services.wiring import build_deps

    settings = get_settings()
    job = make_cli_job(url)
    deps = build_deps(settings, recorded=recorded)
    try:
        with local_recording(settings) as recorder:
            return run_job(job, deps, recorder)
    finally:
        deps.close()


def _redactor() -> Callable[[str], str]:
    from pipeline.redact import Redactor
    from pipeline.settings import get_settings

    try:
        return Redactor.from_settings(get_settings())
    except TechnoShareError:  # settings unreadable: the patterns alone
        return Redactor()


def _output(text: str, *, err: bool = False) -> None:
    """Print with every configured secret (and key-shaped string) redacted."""
    print(_redactor()(text), file=sys.stderr if err else sys.stdout)


def _output_json(result: PipelineResult) -> None:
    """The result as JSON, each string value redacted before serialising (redacting the
    serialised text could cut through an escaped quote and break the JSON)."""
    redact = _redactor()

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    print(json.dumps(clean(result.model_dump(mode="json")), indent=2, ensure_ascii=False))


def main(args: argparse.Namespace) -> int:
    if not re.match(r"https?://\S+$", args.url.strip(), re.I):
        _output(f"error: not an http(s) link: {args.url!r}", err=True)
        return EXIT_ERROR
    try:
        result = run(args.url, recorded=args.recorded)
    except TechnoShareError as exc:  # e.g. ConfigError while building the dependencies
        _output(f"error: {' '.join(exc.reason.split())}", err=True)
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line (never a secret-bearing traceback dump)
        _output(
            f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", err=True
        )
        return EXIT_ERROR
    if args.json:
        _output_json(result)
    elif result.message is not None:
        _output(readable_text(result.message))
    if result.outcome == Outcome.success:
        return EXIT_OK
    _output(f"{result.outcome.value}: {result.error}", err=True)
    return EXIT_GATE_FAILED if result.outcome == Outcome.gate_failed else EXIT_ERROR
