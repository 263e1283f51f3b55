"""``technoshare doctor``: the troubleshooting steps as one command, one PASS/FAIL/SKIP line each.

    PASS  settings   APP_ENV=dev, secrets masked (--verbose prints them all)
    PASS  mlflow     http://127.0.0.1:5000 healthy; experiment technoshare_commentator: 42 runs
    PASS  outbox     0 MLflow records waiting for replay
    PASS  redis      redis://127.0.0.1:6379/0 answers PING
    FAIL  workers    no worker answered `celery inspect ping` within 2.0 s
    PASS  queues     io=0 llm=3 waiting
    PASS  slack      auth.test ok (bot UBOT) via https://slack.com/api/
    PASS  llm        stage_a=offline/extractive stage_b=offline/extractive; budget none

Exit status 1 when any line is FAIL (SKIP: not applicable to this configuration).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.constants import MLFLOW_OUTBOX_STREAM, QUEUE_IO, QUEUE_LLM
from pipeline.settings import Settings, get_settings

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
RUN_COUNT_CAP = 1000


@dataclass
class Check:
    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.name:<9}  {self.detail}"


def check_settings(settings: Settings, verbose: bool) -> Check:
    masked = settings.masked()
    if verbose:
        return Check(PASS, "settings", json.dumps(masked, default=str, sort_keys=True))
    secrets = sorted(k for k, v in masked.items() if v == "***set***")
    return Check(
        PASS,
        "settings",
        f"APP_ENV={settings.app_env}, MLFLOW_TRACKING_URI={settings.effective_tracking_uri()}, "
        f"secrets set (masked): {', '.join(secrets) or 'none'}",
    )


def check_mlflow(settings: Settings) -> Check:
    if not settings.mlflow_enable_tracking:
        return Check(SKIP, "mlflow", "MLFLOW_ENABLE_TRACKING=false")
    from observability.mlflow_store import MlflowStore
    from observability.setup import masked_uri

    store = MlflowStore(settings)
    try:
        reason = store.probe()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        return Check(FAIL, "mlflow", reason)
    runs = store.client().search_runs([store.experiment_id()], max_results=RUN_COUNT_CAP)
    count = f"{len(runs)}+" if len(runs) >= RUN_COUNT_CAP else str(len(runs))
    tracing = "on" if store.tracing else "off (MLFLOW_ENABLE_TRACING=false)"
    uri = masked_uri(store.uri)
    return Check(
        PASS,
        "mlflow",
        f"{uri} healthy; experiment {settings.mlflow_experiment}: {count} runs; tracing {tracing}",
    )


def _redis(settings: Settings) -> Any:
    import redis

    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )


def check_redis(settings: Settings) -> Check:
    try:
        _redis(settings).ping()
    except Exception as exc:
        return Check(FAIL, "redis", f"{settings.redis_url}: {type(exc).__name__}: {exc}")
    return Check(PASS, "redis", f"{settings.redis_url} answers PING")


def check_outbox(settings: Settings) -> Check:
    try:
        waiting = int(_redis(settings).xlen(MLFLOW_OUTBOX_STREAM))
    except Exception as exc:
        return Check(FAIL, "outbox", f"cannot read {MLFLOW_OUTBOX_STREAM}: {exc}")
    return Check(PASS, "outbox", f"{waiting} MLflow records waiting for replay")


def check_queues(settings: Settings) -> Check:
    from tasks.app import queue_keys  # a queue's messages sit in one list per priority step

    try:
        client = _redis(settings)
        lengths = {
            q: sum(int(client.llen(k)) for k in queue_keys(q)) for q in (QUEUE_IO, QUEUE_LLM)
        }
    except Exception as exc:
        return Check(FAIL, "queues", f"LLEN failed: {exc}")
    return Check(PASS, "queues", " ".join(f"{q}={n}" for q, n in lengths.items()) + " waiting")


def check_workers(settings: Settings, timeout: float) -> Check:
    try:
        from tasks.app import create_app

        app = create_app(settings)  # this command's settings, whatever was imported before
        try:
            # one bounded connection attempt first: with the broker down, inspect's publish
            # retries its connection for ~25 s before it fails
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            replies = app.control.inspect(timeout=timeout).ping() or {}
        finally:
            app.close()
    except Exception as exc:
        return Check(FAIL, "workers", f"celery inspect ping failed: {type(exc).__name__}: {exc}")
    if not replies:
        return Check(
            FAIL, "workers", f"no worker answered `celery inspect ping` within {timeout} s"
        )
    return Check(PASS, "workers", f"{len(replies)} answered: {', '.join(sorted(replies))}")


def check_slack(settings: Settings) -> Check:
    if settings.slack_sink != "slack":
        return Check(SKIP, "slack", f"SLACK_SINK={settings.slack_sink}: replies are not sent")
    if settings.slack_bot_token is None:
        return Check(FAIL, "slack", "SLACK_SINK=slack but SLACK_BOT_TOKEN is not set")
    import httpx

    url = settings.slack_api_url.rstrip("/") + "/auth.test"
    token = settings.slack_bot_token.get_secret_value()
    try:
        resp = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        body = resp.json()
    except Exception as exc:
        return Check(FAIL, "slack", f"auth.test via {settings.slack_api_url}: {type(exc).__name__}")
    if not body.get("ok"):
        return Check(FAIL, "slack", f"auth.test: {body.get('error', 'not ok')}")
    return Check(
        PASS, "slack", f"auth.test ok (bot {body.get('user_id')}) via {settings.slack_api_url}"
    )


def check_llm(settings: Settings) -> Check:
    from services.budget import spent_today

    models = {stage: settings.model_for(stage) for stage in ("stage_a", "stage_b")}
    models_text = " ".join(f"{k}={v}" for k, v in models.items())
    budget = settings.llm_daily_budget_usd
    if budget is None:
        budget_text = "none"
    else:
        budget_text = f"${spent_today(redis=_redis(settings)):.4f} of ${budget:.2f} today"
    problems = []
    paid = {
        m for m in [*models.values(), *settings.llm_fallback_models] if not m.startswith("offline/")
    }
    if paid and not settings.llm_api_base:
        import litellm

        for model in sorted(paid):
            missing = litellm.validate_environment(model=model).get("missing_keys") or []
            if missing:
                problems.append(f"{model} needs {', '.join(missing)}")
    if settings.llm_api_base:
        import httpx

        try:
            httpx.get(settings.llm_api_base.rstrip("/") + "/models", timeout=3)
        except httpx.HTTPError as exc:
            problems.append(
                f"LLM_API_BASE {settings.llm_api_base} unreachable ({type(exc).__name__})"
            )
    detail = f"{models_text}; fallbacks {','.join(settings.llm_fallback_models) or 'none'}; budget {budget_text}"
    if problems:
        return Check(FAIL, "llm", f"{detail}; " + "; ".join(problems))
    return Check(PASS, "llm", detail)


def run_checks(
    settings: Settings, *, verbose: bool = False, ping_timeout: float = 2.0
) -> list[Check]:
    steps: list[Callable[[], Check]] = [
        lambda: check_settings(settings, verbose),
        lambda: check_mlflow(settings),
        lambda: check_redis(settings),
        lambda: check_outbox(settings),
        lambda: check_workers(settings, ping_timeout),
        lambda: check_queues(settings),
        lambda: check_slack(settings),
        lambda: check_llm(settings),
    ]
    results = []
    for step in steps:
        try:
            results.append(step())
        except Exception as exc:  # a broken check is a failed check, not a crash
            results.append(Check(FAIL, step.__name__, f"{type(exc).__name__}: {exc}"))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="print every (masked) setting")
    parser.add_argument("--ping-timeout", type=float, default=2.0, help="celery inspect ping (s)")


def main(args: argparse.Namespace) -> int:
    results = run_checks(get_settings(), verbose=args.verbose, ping_timeout=args.ping_timeout)
    for result in results:
        print(result.line(), flush=True)
    return 1 if any(r.status == FAIL for r in results) else 0
