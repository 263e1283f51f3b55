"""A ``PromptSource`` that serves the templates MLflow's Prompt Registry holds under an alias
(``production`` by default), cached, and the files when the registry cannot answer.

``get(name)`` returns ``PromptTemplate(name, text, version)`` with ``version`` = the registry's
version number (e.g. ``"4"``) when the text came from the registry, or ``file:<hash>`` when it
came from ``prompts/<name>.md``; stages put it in ``StageUsage.prompt_version``, so the stage
run (tag ``prompt_version``), the parent run (``stage_a.prompt_version``) and the stage span
all say which text was used.

Never slows a job down for an absent MLflow: when the shared health state says MLflow is down
the files are used at once, and a failed lookup is not retried for ``fallback_ttl`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pipeline.prompting import FilePromptSource, PromptSource, PromptTemplate
from pipeline.settings import Settings, get_settings

log = logging.getLogger("observability")


class RegistryPromptSource:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        fallback: PromptSource | None = None,
        alias: str | None = None,
        ttl: float = 300.0,
        fallback_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or get_settings()
        self.fallback = fallback or FilePromptSource()
        self.alias = alias or self.settings.mlflow_prompt_alias
        self.ttl = ttl
        self.fallback_ttl = fallback_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, PromptTemplate]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> PromptTemplate:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        template, ttl = self._load(name)
        with self._lock:
            self._cache[name] = (now + ttl, template)
        return template

    def _load(self, name: str) -> tuple[PromptTemplate, float]:
        from observability.recorder import get_recorder

        # the process's MLflow recorder knows the store and whether it answers; none: files
        rt = getattr(get_recorder(), "runtime", None)
        if rt is None or not rt.health.available():
            return self.fallback.get(name), self.fallback_ttl
        try:
            version = rt.store.client().load_prompt(
                f"prompts:/{name}@{self.alias}", allow_missing=True
            )
        except Exception as exc:
            if not _is_missing(exc):  # an absent prompt or alias is not an MLflow outage
                rt.health.mark_down(f"prompt registry: {type(exc).__name__}: {exc}"[:300])
            log.info("prompt %s@%s from the files: %s", name, self.alias, exc)
            return self.fallback.get(name), self.fallback_ttl
        if version is None:
            log.info("prompt %s@%s not registered: from the files", name, self.alias)
            return self.fallback.get(name), self.fallback_ttl
        return PromptTemplate(
            name=name, text=version.template, version=str(version.version)
        ), self.ttl


def _is_missing(exc: Exception) -> bool:
    """MLflow's "no such prompt/alias" (a sqlite store says it in ``error_code`` only)."""
    code = str(getattr(exc, "error_code", "") or "")
    return "RESOURCE_DOES_NOT_EXIST" in (code + str(exc)) or "not found" in str(exc).lower()
