"""CPU per job of the five stages (not a test): every recorded corpus link in this process, with
a zero-latency stub LLM, against a reference measured in the same run.

The stub replays answers the offline model wrote for the same prompts in a warm-up pass, so
the model's own work is not counted: what is left is what a worker spends per job outside the
LLM wait (prompt building, validation, gates, rendering, and the fetch for the io worker).

Two modes run on each job in turn, so load on a shared machine hits both alike:

- ``current``: the code as it is;
- ``reference``: the same code with the text work of before put back: the pairwise
  near-duplicate check (``pairwise_citable_sentences`` below), no per-text caches, the team
  context dumped to YAML at every Stage B prompt and the evidence links found three times.

Before each job the per-text caches are emptied: a job's evidence is new text. The two modes
must keep the same sentences: the bench checks that ``citable_sentences`` and the pairwise
reference agree on every corpus item, and says so.

    python bench/cpu_per_job.py [--repeat 3]      # prints a table, writes bench/results/cpu_per_job.json

A second table is what one LLM call costs the worker around the model: the same replayed
answer served by a litellm custom provider through ``LLMClient`` (the Router path every real
model takes), next to the replay stub alone; a job makes 2-3 such calls.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "cpu_per_job.json"
TARGET_MS = 60.0

from pipeline.offline import apply_offline_defaults  # noqa: E402

apply_offline_defaults()


class ReplayLLM:
    """The LLM protocol with zero latency: the offline model's answer to the first prompt of
    each (link, stage, purpose), replayed; validated and checked as LLMClient would."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str, str], str] = {}
        self.url = ""

    def complete_model(
        self, stage: str, messages: list[dict[str, Any]], output_model: Any, **kwargs: Any
    ) -> tuple[Any, Any]:
        from pipeline import offline_model
        from pipeline.models import LLMCall, StageUsage

        key = (self.url, stage, kwargs.get("purpose", "answer"))
        if key not in self.answers:
            self.answers[key] = offline_model.answer(messages)
        result = output_model.model_validate_json(self.answers[key])
        if kwargs.get("check") is not None:
            kwargs["check"](result)
        return result, StageUsage(model="stub/replay", calls=[LLMCall(model="stub/replay")])


def pairwise_citable_sentences(texts: Iterable[str]) -> list[str]:
    """``pipeline.text.citable_sentences`` as it was: each sentence compared with every kept
    one (quadratic), every text split and judged again at each call."""
    from pipeline.text import (
        NEAR_DUPLICATE,
        content_tokens,
        is_citable,
        similarity,
        split_units,
    )

    kept: list[str] = []
    seen: set[str] = set()
    token_sets: list[set[str]] = []
    for text in texts:
        for unit in split_units(text):
            key = unit.text.lower()
            if key in seen or not is_citable(unit):
                continue
            own = set(content_tokens(unit.text))
            if any(similarity(own, other) >= NEAR_DUPLICATE for other in token_sets):
                continue
            seen.add(key)
            token_sets.append(own)
            kept.append(unit.text)
    return kept


def clear_caches() -> None:
    from pipeline import sanitize
    from pipeline.text import clear_text_caches

    clear_text_caches()
    sanitize._evidence_links.cache_clear()


@contextmanager
def reference_mode() -> Iterator[None]:
    """Put the text work of before back in place (see the module docstring)."""
    from pipeline import gates, sanitize, stage_b, text

    saved = (
        gates.citable_sentences,
        stage_b.team_context_yaml,
        sanitize._evidence_links,
        text._split_units_cached,
    )
    gates.citable_sentences = pairwise_citable_sentences
    stage_b.team_context_yaml = lambda context: context.to_prompt_yaml()
    sanitize._evidence_links = sanitize._evidence_links.__wrapped__  # type: ignore[assignment]
    text._split_units_cached = lambda t: tuple(text._split_units(t))  # type: ignore[assignment]
    try:
        yield
    finally:
        (
            gates.citable_sentences,
            stage_b.team_context_yaml,
            sanitize._evidence_links,
            text._split_units_cached,
        ) = saved


def run_one(url: str, deps: Any, stub: ReplayLLM) -> dict[str, float]:
    """CPU ms of each stage of one job."""
    from pipeline.models import JobCarry
    from pipeline.stages import STAGES, advance
    from services.run_cli import make_cli_job

    stub.url = url
    carry = JobCarry(job=make_cli_job(url))
    out: dict[str, float] = {}
    for stage in STAGES:
        started = time.process_time()
        carry = advance(stage, carry, deps)
        out[stage.name] = (time.process_time() - started) * 1000
    return out


def build() -> tuple[list[str], Any, ReplayLLM]:
    from pipeline.fetch import SafeFetcher
    from pipeline.settings import Settings
    from services.recorded_web import RecordedWeb
    from services.wiring import build_deps

    web = RecordedWeb()
    urls = [u for group in web.recorded_urls().values() for u in group]
    settings = Settings(mlflow_enable_tracking=False)
    fetcher = SafeFetcher(settings, transport=web.transport, resolver=web.resolver)
    stub = ReplayLLM()
    deps = build_deps(settings, fetcher=fetcher)
    deps.llm_factory = lambda _settings: stub
    return urls, deps, stub


def same_sentences(urls: list[str], deps: Any) -> tuple[int, list[str]]:
    from pipeline.adapters import fetch_evidence
    from pipeline.text import citable_sentences

    differ = []
    for url in urls:
        evidence = fetch_evidence(url, deps.settings, deps.fetcher)
        texts = [s.text for s in evidence.snippets]
        if citable_sentences(texts) != pairwise_citable_sentences(texts):
            differ.append(url)
    return len(urls), differ


def client_overhead(urls: list[str], deps: Any, stub: ReplayLLM, repeat: int) -> dict[str, float]:
    """CPU ms per Stage A call: through LLMClient and a litellm Router, and the stub alone."""
    from litellm import CustomLLM

    from pipeline.adapters import fetch_evidence
    from pipeline.llm import LLMClient
    from pipeline.llm_litellm import lib
    from pipeline.prompting import new_nonce
    from pipeline.stage_a import FactsAnswer, build_messages

    litellm = lib()
    current = {"text": ""}

    class Replay(CustomLLM):
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            response = kwargs["model_response"]
            response.choices[0].message.content = current["text"]
            response.model = "benchreplay/model"
            return response

    if not any(p.get("provider") == "benchreplay" for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "benchreplay", "custom_handler": Replay()},
        ]
    client = LLMClient(deps.settings.model_copy(update={"llm_model": "benchreplay/model"}))
    prompts = []
    for url in urls:
        evidence = fetch_evidence(url, deps.settings, deps.fetcher)
        messages, _ = build_messages(
            evidence, prompts=deps.prompts, settings=deps.settings, nonce=new_nonce()
        )
        prompts.append((url, messages))
    times: dict[str, list[float]] = {"litellm": [], "stub": []}
    for round_ in range(repeat + 1):  # the first round warms the Router up
        for url, messages in prompts:
            current["text"] = stub.answers[(url, "stage_a", "answer")]
            started = time.process_time()
            client.complete_model("stage_a", messages, FactsAnswer)
            middle = time.process_time()
            stub.url = url
            stub.complete_model("stage_a", messages, FactsAnswer)
            if round_:
                times["litellm"].append((middle - started) * 1000)
                times["stub"].append((time.process_time() - middle) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def summarize(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    names = [*samples[0].keys(), "llm stages", "total"]
    for name in names:
        values = []
        for s in samples:
            if name == "total":
                values.append(sum(s.values()))
            elif name == "llm stages":
                values.append(s["stage_a"] + s["stage_b"] + s["quality_gates"])
            else:
                values.append(s[name])
        values.sort()
        out[name] = {
            "median": statistics.median(values),
            "mean": statistics.fmean(values),
            "p90": values[int(0.9 * (len(values) - 1))],
            "max": values[-1],
        }
    return out


def table(result: dict[str, Any]) -> str:
    ref, cur = result["reference"], result["current"]
    lines = [
        "| stage | reference median / mean / max ms | current median / mean / max ms | mean ratio |",
        "| --- | --- | --- | --- |",
    ]
    for name in cur:
        r, c = ref[name], cur[name]
        ratio = c["mean"] / r["mean"] if r["mean"] else 0.0
        lines.append(
            f"| {name} | {r['median']:.1f} / {r['mean']:.1f} / {r['max']:.1f} "
            f"| {c['median']:.1f} / {c['mean']:.1f} / {c['max']:.1f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the corpus per mode")
    args = parser.parse_args(argv)
    urls, deps, stub = build()
    for url in urls:  # warm-up: imports, the stub's answers
        run_one(url, deps, stub)
    checked, differ = same_sentences(urls, deps)
    modes: dict[str, list[dict[str, float]]] = {"reference": [], "current": []}

    def current(url: str) -> dict[str, float]:
        clear_caches()  # the job's evidence is new text
        return run_one(url, deps, stub)

    def reference(url: str) -> dict[str, float]:
        clear_caches()
        with reference_mode():
            return run_one(url, deps, stub)

    runners: dict[str, Callable[[str], dict[str, float]]] = {
        "current": current,
        "reference": reference,
    }
    started = time.time()
    for _ in range(args.repeat):
        for url in urls:
            for mode in ("reference", "current"):
                modes[mode].append(runners[mode](url))
    overhead = client_overhead(urls, deps, stub, args.repeat)
    result = {
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "jobs": len(urls),
        "repeat": args.repeat,
        "seconds": round(time.time() - started, 1),
        "same_sentences": {"checked": checked, "differ": differ},
        "target_total_ms": TARGET_MS,
        "reference": summarize(modes["reference"]),
        "current": summarize(modes["current"]),
        "llm_call_ms_median": overhead,
    }
    deps.close()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(
        f"\none LLM call, median CPU ms: through LLMClient and a litellm Router "
        f"{overhead['litellm']:.1f}, the replay stub alone {overhead['stub']:.1f}"
    )
    print(
        f"\n{len(urls)} corpus jobs x {args.repeat}; citable sentences identical to the pairwise "
        f"reference on {checked - len(differ)}/{checked}; "
        f"total mean {result['current']['total']['mean']:.1f} ms (target <= {TARGET_MS:g}); "
        f"written to {RESULTS.relative_to(REPO)}"
    )
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
