"""Every error the service raises on purpose, and what the caller should do with it.

The tree decides retries: a task retries ONLY ``RetryableError`` subclasses, with caps
(see ``tasks``), and never retries a ``TerminalError``. Every error carries a
``user_message``: the one short sentence that may be shown in Slack (never a secret,
never a stack trace).

    TechnoShareError
    ├── RetryableError              transient: the same call may succeed later
    │   ├── FetchNetworkError       connect/read timeout, connection reset, DNS hiccup
    │   ├── UpstreamRateLimited     HTTP 429 from a source API (carries retry_after seconds)
    │   ├── UpstreamServerError     HTTP 5xx from a source API
    │   ├── LLMTransientError       429/5xx/timeout from the model after litellm's own retries
    │   ├── LLMRateLimitedError     our shared LLM rate limit stayed full for the bounded wait
    │   └── SlackRateLimited        Slack 429 (carries retry_after seconds)
    │       SlackServerError        Slack 5xx
    └── TerminalError               retrying cannot help
        ├── UnsafeURLError          SSRF guard: private address, bad scheme, userinfo, too many redirects
        ├── UnsupportedContentError binary or unknown content type, unsupported link
        ├── SourceUnavailableError  404/410/401/403/paywall: nothing to read
        ├── LLMOutputError          the model's output stayed invalid after the re-ask
        ├── LLMUnavailableError     every model (primary and fallbacks) failed
        ├── GateFailedError         the commentary failed the quality gates after one repair
        ├── SlackAuthError          invalid_auth / not_authed / account_inactive
        ├── SlackChannelError       channel_not_found / not_in_channel / is_archived
        ├── JobNotFoundError        reprocess of an unknown job id
        └── ConfigError             settings or user YAML invalid

Outcomes map from this tree: a ``GateFailedError`` is the ``gate_failed`` outcome (an honest
short note is still posted); every other terminal error, and a retryable one whose retries are
spent, is the ``error`` outcome.
"""

from __future__ import annotations

from pipeline.redact import redact


class TechnoShareError(Exception):
    """Base of all deliberate errors. ``user_message`` is safe to show in Slack.

    Both texts are redacted when the error is made: key-shaped strings (API keys, Slack and
    GitHub tokens, bearer values, URL passwords) never travel in an error, whatever a provider
    echoed into it; logs, tags and spans redact configured secrets too."""

    user_message: str = "Something went wrong while reading this link."

    def __init__(self, message: str = "", *, user_message: str | None = None) -> None:
        super().__init__(redact(message) if message else self.user_message)
        if user_message is not None:
            self.user_message = redact(user_message)

    @property
    def reason(self) -> str:
        """One-line reason for logs, CLIs and the job store."""
        return f"{type(self).__name__}: {self}"


class RetryableError(TechnoShareError):
    """Transient failure: callers may retry with backoff, up to a cap."""

    retry_after: float | None = None

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message, user_message=user_message)
        self.retry_after = retry_after


class TerminalError(TechnoShareError):
    """Permanent failure: retrying cannot help."""


# --- retryable -----------------------------------------------------------------------------
class FetchNetworkError(RetryableError):
    user_message = "The source could not be reached."


class UpstreamRateLimited(RetryableError):
    user_message = "The source is rate limiting us; try again later."


class UpstreamServerError(RetryableError):
    user_message = "The source answered with a server error."


class LLMTransientError(RetryableError):
    user_message = "The language model is temporarily unavailable."


class LLMRateLimitedError(RetryableError):
    """The shared per-model limit (``LLM_RATE_LIMITS``) had no room within the bounded wait;
    ``retry_after`` is when it will."""

    user_message = "The language model is busy; the job will be retried."


class SlackRateLimited(RetryableError):
    user_message = "Slack is rate limiting the bot."


class SlackServerError(RetryableError):
    user_message = "Slack answered with a server error."


# --- terminal ------------------------------------------------------------------------------
class UnsafeURLError(TerminalError):
    user_message = "This link points to an address the bot is not allowed to read."


class UnsupportedContentError(TerminalError):
    user_message = "This kind of content is not supported."


class SourceUnavailableError(TerminalError):
    user_message = "The source could not be read (not found, private or paywalled)."
    # the source answered but nothing was readable: what retrieval made of it (an Evidence)
    evidence: object | None = None


class LLMOutputError(TerminalError):
    user_message = "The language model did not produce a valid answer."


class LLMUnavailableError(TerminalError):
    user_message = "No language model could answer."


class GateFailedError(TerminalError):
    user_message = "The commentary did not pass the quality checks."


class SlackAuthError(TerminalError):
    user_message = "The bot's Slack credentials are invalid."


class SlackChannelError(TerminalError):
    user_message = "The bot cannot post in this channel."


class JobNotFoundError(TerminalError):
    user_message = "No such job."


class ConfigError(TerminalError):
    user_message = "The bot is misconfigured."
