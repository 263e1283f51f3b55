"""Secrets out of every text that leaves the process: logs, MLflow tags and events, Slack.

A provider error can echo the API key (some do on a 401), a connection error the Redis URL with
its password; such texts end up in log lines, MLflow run tags and span events. :func:`redact`
replaces

- the values of the configured secrets (:func:`secret_values`), as written and URL-encoded;
- key-shaped strings whatever their origin: OpenAI/Anthropic ``sk-...`` keys, Slack ``xoxb-``/
  ``xoxp-``/``xoxa-``/``xapp-`` tokens, GitHub ``ghp_``/``gho_``/``ghs_``/``github_pat_``
  tokens, AWS ``AKIA...`` access key ids, ``Bearer <token>``, ``Authorization: ...`` values,
  ``api_key=...`` / ``"api_key": "..."`` style pairs, and URL passwords
  (``redis://:pw@host``, ``https://user:pw@host``: the user and host stay);

by ``[REDACTED]``, with one precompiled pattern, run only over the lines that a cheap scan
finds worth it (the same result as over the whole text). Redacting redacted text changes
nothing. :class:`RedactingFilter` applies it to log records; :func:`install_log_redaction`
attaches that filter to the root logger and its handlers.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:  # settings are read by name only: pipeline.errors imports this module
    from pipeline.settings import Settings

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values would wipe ordinary words and numbers out of every log

# A setting or environment variable holds a secret when its name ends in one of these words or
# contains "secret"/"password" (SLACK_BOT_TOKEN, OPENAI_API_KEY, FLOWER_BASIC_AUTH).
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:token|key|secret|password|passwd|pwd|auth|credentials?)$|secret|password", re.I
)
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]*:([^\s@/]+)@", re.I)

# Names in "name=value" / "name: value" / "'name': 'value'" pairs whose value is a secret.
_KEY_WORDS = (
    r"api[_-]?key|apikey|(?:secret|access|private)[_-]key|client[_-]secret|secret|password|"
    r"passwd|pwd|token|auth|authorization|credentials?"
)
_PATTERNS = {
    # scheme://user:PASSWORD@host; the user and the host stay readable
    "url": r"(?P<url_head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<url_pw>[^\s@/]+)(?=@)",
    # api_key=..., "password": "...", Authorization: Bearer ..., X-Api-Key: ...
    "kv": (
        rf"(?P<kv_head>(?<![\w-])[\"']?(?:[A-Za-z0-9]+[_.-])*(?:{_KEY_WORDS})[\"']?"
        r"[ \t]*[:=][ \t]*(?P<kv_q>[\"'])?(?:(?:Bearer|Basic|Token|Digest)[ \t]+)?)"
        r"(?P<kv_val>\[REDACTED\]|(?(kv_q)(?:(?!(?P=kv_q))[^\n])+|[^\s\"',;&})\]]+))"
    ),
    # a bearer token with a digit in it, or a long one ("Bearer authentication" stays)
    "bearer": (
        r"(?P<bearer_head>\bBearer[ \t]+)"
        r"(?P<bearer_val>(?=[\w.~+/=-]*\d)[\w.~+/=-]{8,}|[\w.~+/=-]{24,})"
    ),
    "key": (
        r"\bsk-(?=[\w-]*\d)[\w-]{20,}"  # OpenAI sk-..., sk-proj-...; Anthropic sk-ant-...
        r"|\bx(?:ox[abposr]|app)-[A-Za-z0-9-]{8,}"  # Slack bot/user/app/config tokens
        r"|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,})"  # GitHub tokens
        r"|(?-i:\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"  # AWS access key ids, upper case only
    ),
}


# What every match of the patterns above holds (the kv keywords all end in one of these words,
# followed by [:=]), within its run of non-space characters from the match's start: scanning
# for these is ~5x cheaper than trying the full pattern at every position, and the full pattern
# is then tried only at the few places before a trigger where a match could start. No match
# spans a "\n" (their runs exclude whitespace or stop at the line's end). The lookahead's class
# of first characters lets the regex engine skip every other position quickly.
_TRIGGERS = (
    r"://|bearer[ \t]|sk-|xox[abposr]-|xapp-|gh[pousr]_|github_pat_|akia|asia"
    r"|(?:key|secret|passw(?:or)?d|pwd|token|auth(?:orization)?|credentials?)[\"']?[ \t]*[:=]"
)
_TRIGGER_FIRST = ":bsxgakptc"
_UP_TO_LAST_SPACE = re.compile(r"[^\n]*\s")  # greedy: ends after the last space before a point


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _url_passwords(value: str) -> list[str]:
    """The userinfo passwords of the URLs in ``value``, as written and percent-decoded."""
    found = []
    for m in _URL_PASSWORD.finditer(value):
        found += [m.group(1), unquote(m.group(1))]
    try:  # urlsplit also reads forms the pattern is strict about
        password = urlsplit(value.strip()).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    return found


def _forms_of(name: str, value: str) -> list[str]:
    """A secret and the other shapes it takes in text: a basic-auth "user:password" also as its
    password alone and as the base64 of an ``Authorization: Basic`` header."""
    forms = [value]
    if "auth" in name.lower() and ":" in value:
        forms += [value.partition(":")[2], base64.b64encode(value.encode()).decode()]
    return forms


def secret_values(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value that is set: secret settings (``SecretStr`` fields and fields named
    ``*_token``, ``*_key``, ``*secret*``, ``*password*``, ``*_auth``), passwords inside URL
    settings (``REDIS_URL``, ``MLFLOW_TRACKING_URI``...), and the same for the environment
    variables, where the LLM providers' keys live (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``:
    litellm reads them from the environment, not from Settings). ``environ`` defaults to
    ``os.environ``. Values shorter than :data:`MIN_SECRET_LENGTH` are left out; longest first."""
    found: list[str] = []
    named: list[tuple[str, Any]] = [
        (name, getattr(settings, name, None)) for name in type(settings).model_fields
    ]
    named += list((os.environ if environ is None else environ).items())
    for name, raw in named:
        is_secret = hasattr(raw, "get_secret_value")  # pydantic's SecretStr
        value = raw.get_secret_value() if is_secret else raw
        if not isinstance(value, str) or not value:
            continue
        if is_secret or _is_secret_name(name):
            found += _forms_of(name, value)
        found += _url_passwords(value)
    unique = {v for v in found if len(v) >= MIN_SECRET_LENGTH}
    return sorted(unique, key=lambda v: (-len(v), v))


class Redactor:
    """``redactor(text)``: :func:`redact` with a fixed set of secrets, compiled once."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literals = {
            form
            for secret in secrets
            if secret and len(secret) >= MIN_SECRET_LENGTH
            for form in (secret, quote(secret, safe=""), quote_plus(secret))
        }
        alternatives = []
        if literals:  # longest first, so a secret wins over a shorter one it contains
            ordered = sorted(literals, key=lambda v: (-len(v), v))
            alternatives.append("(?P<secret>" + "|".join(map(re.escape, ordered)) + ")")
        alternatives += [f"(?P<{name}>{pattern})" for name, pattern in _PATTERNS.items()]
        self._pattern = re.compile("|".join(alternatives), re.I)
        # A secret with a line break in it would span lines: then every text is redacted whole.
        self._whole_text = any("\n" in literal for literal in literals)
        triggers = [re.escape(v) for v in sorted(literals, key=lambda v: (-len(v), v))]
        first = sorted(set(_TRIGGER_FIRST) | {v[0] for v in literals})
        self._trigger = re.compile(
            "(?=[" + "".join(map(re.escape, first)) + "])(?:" + "|".join([*triggers, _TRIGGERS])
            + ")", re.I,
        )  # fmt: skip

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> Redactor:
        return cls(secret_values(settings, environ))

    def __call__(self, text: str) -> str:
        if self._whole_text:
            return self.whole(text)
        out: list[str] = []
        done = pos = 0  # text[:done] is in ``out``; no match starts in [done, pos)
        match_at = self._pattern.match
        while (trigger := self._trigger.search(text, pos)) is not None:
            # A match holding this trigger starts in its run of non-space characters (literal
            # secrets start at their trigger); none starts between ``pos`` and that run.
            at = trigger.start()
            line = text.rfind("\n", pos, at) + 1 or pos
            space = _UP_TO_LAST_SPACE.match(text, line, at)
            found = None
            for start in range(space.end() if space else line, at + 1):
                if (found := match_at(text, start)) is not None:
                    break
            if found is None:
                pos = at + 1
                continue
            out += [text[done : found.start()], _replacement(found)]
            done = pos = found.end()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def whole(self, text: str) -> str:
        """The full pattern tried at every position of ``text``: what ``__call__`` equals."""
        return self._pattern.sub(_replacement, text)


def _replacement(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "url":
        return m.group("url_head") + REDACTED
    if kind == "kv":
        return m.group("kv_head") + REDACTED  # a closing quote is not part of the match
    if kind == "bearer":
        return m.group("bearer_head") + REDACTED
    return REDACTED  # a configured secret or a key-shaped token


@lru_cache(maxsize=32)
def _redactor_for(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret of ``secrets`` (as written and URL-encoded) and every
    key-shaped string replaced by ``[REDACTED]``. The compiled pattern is cached per set of
    secrets; code that redacts often should build a :class:`Redactor` once."""
    return _redactor_for(tuple(sorted(set(secrets))))(text)


class RedactingFilter(logging.Filter):
    """Redacts a record before any handler formats it: its message merged with its args (an
    arg's own ``str`` may hold the secret, and a redacted arg could break a ``%d``), its stack
    text, and its exception, formatted now into ``exc_text``. ``exc_info`` is then cleared so
    no formatter can print the unredacted traceback again; the standard formatter prints
    ``exc_text``. Never drops a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redactor(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


def install_log_redaction(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to the root logger and to each of its handlers.

    Idempotent: a second call reuses the installed filter, refreshes its secrets from
    ``settings`` and attaches it to handlers added since. Call it after logging is configured
    (a handler added later, or one on a logger that does not propagate, is not covered)."""
    root = logging.getLogger()
    redactor = Redactor.from_settings(settings, environ)
    installed = next((f for f in root.filters if isinstance(f, RedactingFilter)), None)
    if installed is None:
        installed = RedactingFilter(redactor)
        root.addFilter(installed)
    else:
        installed.redactor = redactor
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(installed)
    return installed
