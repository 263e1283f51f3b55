"""The one settings object. Every knob is an environment variable of the same name (upper case),
optionally from a ``.env`` file (``TECHNOSHARE_ENV_FILE`` names another one; empty: none, which
is what the test suite sets). Lists are comma-separated.

Outside dev (``APP_ENV`` != ``dev``) settings fail fast at start-up when a secret the
configured mode needs is missing, instead of failing on the first job.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE_VARIABLE = "TECHNOSHARE_ENV_FILE"
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env_file = os.environ.get(ENV_FILE_VARIABLE)
        if env_file is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        if not env_file.strip():
            return init_settings, env_settings, file_secret_settings
        dotenv = DotEnvSettingsSource(settings_cls, env_file=env_file)
        return init_settings, env_settings, dotenv, file_secret_settings

    app_env: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    state_dir: Path = Path(".technoshare")  # local sqlite MLflow store, local Slack sink, ...

    # --- Slack ---------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None  # xapp-... enables Socket Mode
    slack_api_url: str = "https://slack.com/api/"  # a local stub in tests
    slack_sink: Literal["slack", "console", "file"] = "console"  # where replies go
    slack_channels: CommaList = Field(default_factory=list)  # empty = every channel
    slack_bot_user_id: str | None = None  # our own user, to ignore our messages
    slack_process_thread_replies: bool = False
    slack_max_links_per_message: int = 5
    slack_ops_channel: str | None = None
    repeat_window_days: int = 7  # same canonical URL answered in the channel within N days
    # --- the team's history (services/history_store.py): "Shared before", follow-ups, digest
    history_ttl_days: int = 180  # an answered link is kept this long; 0: no history at all
    history_max_entries: int = 500  # per channel, the newest; what "Shared before" searches
    followup_window_days: int = 30  # questions in a reply's thread are answered this long
    # a link read within this many seconds is not read again (its evidence is reused; a
    # reprocess always reads afresh); 0: no evidence cache
    evidence_cache_ttl_seconds: int = 3600
    digest_enabled: bool = False  # the weekly digest (celery beat), opt-in
    digest_channels: CommaList = Field(default_factory=list)  # channels to digest
    digest_post_to: Literal["channel", "ops"] = "channel"  # each channel's own, or the ops one

    # --- ingest HTTP endpoint (services/ingest.py) -----------------------------------------
    ingest_max_body_bytes: int = 1024 * 1024  # Slack's payloads are a few KB; larger: 413
    ingest_read_timeout_seconds: float = 5.0  # whole body within this, else 408
    ingest_redis_retry_seconds: float = 10.0  # Redis/broker retry budget per call, then 503

    # --- Redis / Celery ------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_result_url: str | None = None  # defaults to redis_url
    llm_worker_concurrency: int = 4
    task_max_retries: int = 5
    # Hard limit per task (s). Default: each stage's own bound (fetch: FETCH_TOTAL_TIMEOUT per
    # read; LLM: LLM_TIMEOUT per attempt; post: SLACK_TIMEOUT per call; see
    # tasks.app.queue_time_limits); set, it caps them all. With the retry countdown cap it sets
    # the visibility timeout, i.e. how soon a dead node's tasks run again (~85 s by default).
    task_time_limit: int | None = None
    task_retry_max_countdown: int = 15  # cap on a retry countdown, Slack Retry-After included
    celery_visibility_timeout: int | None = None  # default: longest limit + max countdown + 15 s
    # Task events (each task's sent/received/started/succeeded as a PUBLISH, ~22 per job) feed
    # only a monitor. Off by default; Flower turns them on at the workers itself (it broadcasts
    # enable_events every few seconds while it runs), so its UI works either way.
    celery_task_events: bool = False
    slack_timeout: float = 10.0  # per Slack Web API call

    # --- retrieval -----------------------------------------------------------------------
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_html_url: str = "https://arxiv.org/html"  # + "/<id>": LaTeXML full text, read first
    arxiv_pdf_url: str = "https://arxiv.org/pdf"  # + "/<id>": the PDF, when there is no HTML
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr | None = None
    fetch_recorded: bool = False  # serve every fetch from data/recorded (demo, offline dev, e2e)
    fetch_allow_hosts: CommaList = Field(default_factory=list)  # hosts/IPs exempt from SSRF checks
    fetch_max_bytes: int = 5 * 1024 * 1024
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 10.0
    fetch_total_timeout: float = 20.0
    fetch_max_redirects: int = 5
    fetch_user_agent: str = "TechnoShareCommentator/0.1 (+https://github.com/technoshare)"
    pdf_max_pages: int = 30
    evidence_max_chars: int = 40_000
    evidence_max_snippets: int = 60

    # --- LLM -----------------------------------------------------------------------------
    llm_model: str = "offline/extractive"  # default for both stages
    llm_model_stage_a: str | None = None
    llm_model_stage_b: str | None = None
    llm_fallback_models: CommaList = Field(default_factory=list)
    llm_api_base: str | None = None  # OpenAI-compatible servers (vLLM, llama.cpp, LM Studio)
    # Per model call, with its retries, inside the LLM stages' time limit (25 s x 2 attempts);
    # later retries are the task's own, with a countdown that frees the worker meanwhile.
    llm_timeout: float = 25.0
    llm_max_retries: int = 1  # per model, on 429/5xx/timeout, with backoff
    llm_temperature: float = 0.2
    llm_daily_budget_usd: float | None = None
    # Shared by every worker through Redis (services/llm_limits.py); the offline model is never
    # limited. "<model or provider>=<n>rpm,<n>tpm;..." e.g. "openai/gpt-4o-mini=500rpm,200000tpm".
    llm_rate_limits: str = ""
    llm_rate_limit_max_wait_seconds: float = 10.0  # then LLMRateLimitedError (the task retries)
    # Reuse of a validated answer to the same messages and model, in Redis. Off by default: a
    # hit needs the same evidence byte for byte, and a reprocess asks for a fresh answer.
    llm_cache_ttl_seconds: int = 0
    max_tool_calls: int = 3
    project_context_path: Path = REPO_ROOT / "prompts" / "project_context.yaml"

    # --- quality gates -------------------------------------------------------------------
    gate_tldr_items: int = 3
    gate_summary_full_min: int = 10
    gate_summary_full_max: int = 15
    gate_summary_partial_min: int = 4
    gate_summary_partial_max: int = 8
    gate_min_project_bullets: int = 2
    gate_max_project_bullets: int = 8
    gate_max_similar_tech: int = 8
    slack_max_blocks: int = 50
    slack_max_section_chars: int = 3000

    # --- alerts to SLACK_OPS_CHANNEL (eval/health.py; each breach posted once per UTC day) --
    alert_max_gate_failures_per_day: int = 3  # alert when MORE jobs than this end gate_failed
    alert_max_error_outcomes_per_day: int = 5  # alert when MORE jobs than this end in error
    alert_min_eval_pass_rate: float = 0.8  # alert when the latest eval run is below this

    # --- MLflow --------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = None  # default: sqlite in state_dir
    mlflow_enable_tracking: bool = True
    mlflow_enable_tracing: bool = True
    mlflow_experiment: str = "technoshare_commentator"
    mlflow_eval_experiment: str = "technoshare_eval"
    mlflow_prompt_alias: str = "production"
    mlflow_http_timeout: float = 3.0
    mlflow_http_max_retries: int = 0

    # --- Flower --------------------------------------------------------------------------
    flower_basic_auth: SecretStr | None = None  # "user:password"

    @field_validator("slack_channels", "llm_fallback_models", "fetch_allow_hosts", mode="before")
    @classmethod
    def _split_commas(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [item.strip() for item in v.split(",") if item.strip()]
        return v

    @model_validator(mode="after")
    def _secrets_outside_dev(self) -> Settings:
        if self.app_env == "prod":
            missing = []
            if self.slack_sink == "slack":
                if not self.slack_bot_token:
                    missing.append("SLACK_BOT_TOKEN")
                if not self.slack_signing_secret and not self.slack_app_token:
                    missing.append("SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)")
            if missing:
                raise ConfigError(f"APP_ENV=prod needs: {', '.join(missing)}")
        return self

    # --- derived -------------------------------------------------------------------------
    def model_for(self, stage: str) -> str:
        if stage == "stage_a" and self.llm_model_stage_a:
            return self.llm_model_stage_a
        # follow-up answers are written like the commentary: by the Stage B model
        if stage in ("stage_b", "followup") and self.llm_model_stage_b:
            return self.llm_model_stage_b
        return self.llm_model

    def effective_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    def masked(self) -> dict[str, Any]:
        """Effective settings with every secret masked, for ``doctor`` and logs."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                out[name] = "***set***"
            elif value is None:
                out[name] = None
            else:
                out[name] = value if not isinstance(value, Path) else str(value)
        return out


def env_file() -> Path | None:
    """The settings file in force: ``TECHNOSHARE_ENV_FILE``, else ``.env``; None when that
    variable is set empty (the test suite) or the file does not exist."""
    name = os.environ.get(ENV_FILE_VARIABLE, ".env")
    path = Path(name) if name.strip() else None
    return path if path is not None and path.is_file() else None


def load_env_file() -> None:
    """Put the settings file's variables into the environment (without overriding it): the
    provider keys litellm reads (``OPENAI_API_KEY``...) are not settings fields. Done here,
    not by litellm (``pipeline.offline`` stops litellm's own load), so a disabled file stays
    unread by every library of the process."""
    path = env_file()
    if path is not None:
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    load_env_file()
    return Settings()


def reset_settings_cache() -> None:
    """Tests change the environment and call this to re-read it."""
    get_settings.cache_clear()
