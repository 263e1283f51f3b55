"""Secrets never reach logs, MLflow or Slack: configured values and key-shaped strings are
replaced by [REDACTED] wherever they appear, an exception's text in a log line included."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

import pytest

from pipeline.redact import (
    REDACTED,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    redact,
    secret_values,
)
from pipeline.settings import Settings

OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
ANTHROPIC_KEY = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
SIGNING_SECRET = "8f14e45fceea167a5a36dedd4bea2543"
REDIS_PASSWORD = "r3dis/pa ss"  # needs URL-encoding inside REDIS_URL


@pytest.fixture
def settings() -> Settings:
    return Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token="xapp-1-A0123456789-0123456789012-abcdef0123456789",
        github_token="ghp_0123456789abcdefghijABCDEFGHIJ012345",
        redis_url=f"redis://:{quote(REDIS_PASSWORD, safe='')}@redis.internal:6379/0",
        mlflow_tracking_uri="https://ml-user:mlflow-pw-42@mlflow.internal:5000",
        flower_basic_auth="admin:flower-secret-pw",
    )


ENV = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "HOME": "/home/app"}


def test_secret_values_cover_every_secret_setting_and_the_llm_keys(settings):
    values = secret_values(settings, ENV)
    for expected in (
        BOT_TOKEN,
        SIGNING_SECRET,
        settings.slack_app_token.get_secret_value(),
        settings.github_token.get_secret_value(),
        REDIS_PASSWORD,  # decoded from the URL ...
        quote(REDIS_PASSWORD, safe=""),  # ... and as written in it
        "mlflow-pw-42",
        "admin:flower-secret-pw",
        "flower-secret-pw",
        OPENAI_KEY,
        ANTHROPIC_KEY,
    ):
        assert expected in values
    assert "/home/app" not in values  # HOME is not a secret
    assert not any(v in {"ml-user", "redis.internal", "admin"} for v in values)


def test_empty_and_short_secrets_are_ignored():
    settings = Settings(slack_bot_token="", slack_signing_secret="abc12", github_token=None)
    values = secret_values(settings, {"SOME_API_KEY": "x", "OTHER_TOKEN": ""})
    assert values == []
    assert redact("abc12 and x stay", ["abc12", "x", ""]) == "abc12 and x stay"


def test_configured_secrets_are_redacted_as_written_and_url_encoded(settings):
    redactor = Redactor.from_settings(settings, ENV)
    text = (
        f"signing secret {SIGNING_SECRET}; redis password {REDIS_PASSWORD}; "
        f"encoded {quote(REDIS_PASSWORD, safe='')}; flower flower-secret-pw"
    )
    out = redactor(text)
    assert out == (
        f"signing secret {REDACTED}; redis password {REDACTED}; encoded {REDACTED}; "
        f"flower {REDACTED}"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {OPENAI_KEY} rejected", f"key {REDACTED} rejected"),
        ("old key sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", f"old key {REDACTED}"),
        (f"anthropic {ANTHROPIC_KEY}.", f"anthropic {REDACTED}."),
        (f"slack {BOT_TOKEN}", f"slack {REDACTED}"),
        ("user token xoxp-1111111111-2222222222-abcdef", f"user token {REDACTED}"),
        ("legacy xoxa-2-1234567890-abcdef", f"legacy {REDACTED}"),
        ("socket xapp-1-A0123456789-0123456789012-abcdef", f"socket {REDACTED}"),
        ("gh ghp_0123456789abcdefghijABCDEFGHIJ012345", f"gh {REDACTED}"),
        ("oauth gho_0123456789abcdefghijABCDEFGHIJ012345", f"oauth {REDACTED}"),
        ("app ghs_0123456789abcdefghijABCDEFGHIJ012345", f"app {REDACTED}"),
        ("fine github_pat_11ABCDEFG0123456789_abcdefghijklmnop", f"fine {REDACTED}"),
        ("aws AKIAIOSFODNN7EXAMPLE here", f"aws {REDACTED} here"),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig", f"sent Bearer {REDACTED}"),
        ("Authorization: Bearer abcdef123456", f"Authorization: Bearer {REDACTED}"),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", f"authorization: Basic {REDACTED}"),
        ('{"Authorization": "Token abc123def456"}', f'{{"Authorization": "Token {REDACTED}"}}'),
        ("X-Api-Key: q1w2e3r4t5", f"X-Api-Key: {REDACTED}"),
        ("GET /v1?api_key=q1w2e3r4t5&page=2", f"GET /v1?api_key={REDACTED}&page=2"),
        ('body {"api_key": "q1w2e3r4t5", "n": 1}', f'body {{"api_key": "{REDACTED}", "n": 1}}'),
        ("Client(api_key='q1w2e3r4t5')", f"Client(api_key='{REDACTED}')"),
        ("OPENAI_API_KEY=whatever-it-is", f"OPENAI_API_KEY={REDACTED}"),
        ("password: hunter2hunter2", f"password: {REDACTED}"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", f"aws_secret_access_key = {REDACTED}"),
        (
            "cannot connect to redis://:s3cr3t-pw@redis.internal:6379/0",
            f"cannot connect to redis://:{REDACTED}@redis.internal:6379/0",
        ),
        (
            "GET https://ml-user:mlflow-pw-42@mlflow.internal:5000/api failed",
            f"GET https://ml-user:{REDACTED}@mlflow.internal:5000/api failed",
        ),
    ],
)
def test_key_shaped_strings_are_redacted_whatever_their_origin(text, expected):
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


def test_url_passwords_are_masked_but_user_host_and_path_kept():
    out = redact("postgres://app:pw-123456@db.example.com:5432/prod?sslmode=require")
    assert out == f"postgres://app:{REDACTED}@db.example.com:5432/prod?sslmode=require"


@pytest.mark.parametrize(
    "text",
    [
        "The queue handles 1.5 million messages per second.",
        "https://example.org/posts/fast-queues?page=2 and https://host:8080/path@v2",
        "input_tokens=1234 output_tokens=56 max_tokens: 1024",
        "Bearer tokens and Bearer authentication are explained in RFC 6750.",
        "scikit-learn, sk-learn-compatible and a task-0123456789abcdefghij id",
        "The key insight is that token budgets matter; the password policy is strict.",
        "xoxb and ghp_ prefixes alone are no tokens; AKIA1234 is too short.",
        "akiaiosfodnn7example is lower case, Asiaticpacificregion a word.",
        "",
    ],
)
def test_text_without_secrets_is_unchanged(text):
    assert redact(text) == text


def test_redaction_is_idempotent(settings):
    redactor = Redactor.from_settings(settings, ENV)
    text = (
        f"401 for key {OPENAI_KEY} (token {BOT_TOKEN}) via "
        f"redis://:{quote(REDIS_PASSWORD, safe='')}@redis.internal/0, api_key={SIGNING_SECRET}, "
        f'"password": "{REDIS_PASSWORD}", Authorization: Basic YWRtaW46Zmxvd2VyLXNlY3JldC1wdw=='
    )
    once = redactor(text)
    assert redactor(once) == once
    for secret in secret_values(settings, ENV):
        assert secret not in once
    assert "redis.internal" in once


def test_a_longer_secret_wins_over_a_shorter_one_it_contains():
    assert redact("abc123456789 and abc123", ["abc123", "abc123456789"]) == (
        f"{REDACTED} and {REDACTED}"
    )


# Pieces that make or almost make a match of every pattern, in both cases and with the
# characters re.IGNORECASE folds ("\u017f" long s, "\u212a" Kelvin sign), line breaks between.
PIECES = [
    OPENAI_KEY, ANTHROPIC_KEY.upper(), BOT_TOKEN, SIGNING_SECRET, quote(REDIS_PASSWORD, safe=""),
    "redis://:pw-123456@h", "HTTPS://u:Pass-Word-9@host", "://", "api_key=", "API-KEY : ",
    "\"password\": \"", "'token'='", "Authorization: Bearer ", "bearer\t", "Bearer abcdef123456",
    "\u017fecret=", "\u212aEY: v", "AKIAIOSFODNN7EXAMPLE", "akiaiosfodnn7example", "ghp_", "sk-",
    "xoxp-", "github_pat_", "credentials =", "pwd:", "auth=", "value", "q1w2e3r4t5", "[REDACTED]",
    " ", "\t", "\n", "\r\n", "\n\n", "=", ":", "@", "/", "'", '"', "-", "_", "é", "数据", "tokens",
]  # fmt: skip


PROSE = ["the", "queue", "tokens", "keys", "a", "b-c", "x_y", "42", "https", "GET", "(", ")", ","]


def test_redaction_after_the_trigger_scan_is_the_full_pattern_at_every_position(settings):
    import random

    rng = random.Random(20261204)
    for redactor in (Redactor.from_settings(settings, ENV), Redactor()):  # no secrets set too
        for density in (1.0, 0.3, 0.05):  # dense pieces; sparse ones within ordinary words
            for _ in range(2000):
                words = [rng.choice(PIECES) if rng.random() < density else rng.choice(PROSE)
                         for _ in range(rng.randint(0, 40))]  # fmt: skip
                text = "".join(w + rng.choice(["", "", " ", "\n"]) for w in words)
                assert redactor(text) == redactor.whole(text), repr(text)
    page = "\n".join(rng.choice(PIECES[19:]) * rng.randint(1, 300) for _ in range(400))
    assert redactor(page) == redactor.whole(page)  # long lines and many of them


def test_a_secret_with_a_line_break_in_it_is_redacted_across_lines():
    pem = "-----BEGIN KEY-----\nMIIEv0123456789\n-----END KEY-----"
    redactor = Redactor([pem])
    assert redactor(f"loaded {pem} from disk\nok") == f"loaded {REDACTED} from disk\nok"


# --- logging -----------------------------------------------------------------------------------
@pytest.fixture
def log_stream(settings):
    """A real handler on a private logger, filtered like install_log_redaction does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor.from_settings(settings, ENV)))
    logger = logging.getLogger("tests.redact")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_secret_in_a_logged_exception_never_reaches_the_output(log_stream):
    logger, stream = log_stream
    try:
        raise RuntimeError(f"401 Unauthorized: Incorrect API key provided: {OPENAI_KEY}")
    except RuntimeError:
        logger.exception("stage_b failed for %s", "job123")
    output = stream.getvalue()
    assert OPENAI_KEY not in output
    assert "Traceback (most recent call last)" in output  # the traceback is kept, redacted
    assert f"RuntimeError: 401 Unauthorized: Incorrect API key provided: {REDACTED}" in output
    assert "stage_b failed for job123" in output


def test_message_args_and_stack_text_are_redacted(log_stream):
    logger, stream = log_stream
    logger.warning(
        "connect %s failed: %r (%d tries)", f"redis://:{REDIS_PASSWORD}@r/0", BOT_TOKEN, 3
    )
    logger.error(RuntimeError(f"bad signature {SIGNING_SECRET}"))  # a non-string message
    logger.info("where %s", OPENAI_KEY, stack_info=True)
    output = stream.getvalue()
    for secret in (REDIS_PASSWORD, BOT_TOKEN, SIGNING_SECRET, OPENAI_KEY):
        assert secret not in output
    assert f"connect redis://:{REDACTED}@r/0 failed: '{REDACTED}' (3 tries)" in output
    assert f"bad signature {REDACTED}" in output


def test_install_log_redaction_covers_root_and_child_loggers_and_is_idempotent(settings):
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        first = install_log_redaction(settings, ENV)
        second = install_log_redaction(settings, ENV)
        assert first is second
        assert sum(isinstance(f, RedactingFilter) for f in root.filters) == 1
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logging.getLogger("tasks.stage_b").info("provider said %s", ANTHROPIC_KEY)
        root.info("root logger: token %s", BOT_TOKEN)
        assert ANTHROPIC_KEY not in stream.getvalue() and BOT_TOKEN not in stream.getvalue()
        assert stream.getvalue().count(REDACTED) == 2
        # a later call picks up new secrets (another process, rotated keys)
        install_log_redaction(settings, {**ENV, "NEW_SERVICE_TOKEN": "rotated-value-123"})
        root.info("new %s", "rotated-value-123")
        assert "rotated-value-123" not in stream.getvalue()
    finally:
        root.removeHandler(handler)
        for f in [f for f in root.filters if isinstance(f, RedactingFilter)]:
            root.removeFilter(f)
        root.setLevel(old_level)
