"""Hand-made stage models for the gates, render and runner tests.

``good_*`` builders return a set of models that passes every gate; tests change one thing
with ``model_copy(update=...)`` and check that exactly the matching gate fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Fact,
    Facts,
    Job,
    ReadKind,
    SimilarTech,
    Snippet,
    Source,
    StageUsage,
)

PAGE_URL = "https://example.org/posts/fast-queues"
MESSAGE_TEXT = f"Look at this <{PAGE_URL}|post> and https://example.net/other?a=1&amp;b=2"
DOCS_URL = "https://docs.example.org/queues/guide"


@dataclass
class Theme:
    name: str
    description: str = ""


@dataclass
class TeamContext:
    """Stands in for pipeline.context.ProjectContext in pure tests: only ``themes`` is read."""

    themes: list[Theme] = field(
        default_factory=lambda: [Theme("Data pipelines"), Theme("LLM evaluation")]
    )


def make_job(**update) -> Job:
    job = Job(
        job_id="job123",
        channel_id="C123",
        message_ts="1700000000.000100",
        message_text=MESSAGE_TEXT,
        url=PAGE_URL,
        canonical_url=PAGE_URL,
    )
    return job.model_copy(update=update)


def make_evidence(coverage: Coverage = Coverage.full, **update) -> Evidence:
    evidence = Evidence(
        url=PAGE_URL,
        canonical_url=PAGE_URL,
        adapter="WebPageAdapter",
        sources=[Source(url=PAGE_URL, title="Fast queues & <slow> consumers", site_name="Ex")],
        snippets=[
            Snippet(id="S1", text="The queue handles 1.5 million messages per second."),
            Snippet(id="S2", text=f"See the guide at {DOCS_URL} for setup."),
            Snippet(id="S3", text="Consumers acknowledge messages late to survive crashes."),
        ],
        read=ReadKind.full_text if coverage == Coverage.full else ReadKind.abstract,
        coverage=coverage,
        coverage_reason=None if coverage == Coverage.full else "abstract only",
        char_count=2000,
    )
    return evidence.model_copy(update=update)


def make_facts(**update) -> Facts:
    facts = Facts(
        title="Fast queues",
        key_facts=[
            Fact(text="The queue handles 1.5 million messages per second.", snippet_ids=["S1"]),
            Fact(text="Consumers acknowledge late.", snippet_ids=["S3"]),
        ],
        usage=StageUsage(
            model="offline/extractive", prompt_name="stage_a", prompt_version="file:abc"
        ),
    )
    return facts.model_copy(update=update)


SUMMARY_SENTENCES = [
    "The post describes a message queue built for high throughput.",
    "It reports 1.5 million messages per second on one node.",
    "Consumers acknowledge messages late, e.g. after the work is done.",
    "A crash therefore requeues the message instead of losing it.",
    "The author compares the design with Dr. Smith's earlier broker.",
    f"Setup is explained in the guide at {DOCS_URL} in detail.",
    "Batching is used to reduce the number of network round trips.",
    "Back-pressure stops producers when consumers fall behind.",
    "Metrics are exported for every queue and consumer group.",
    "The post ends with a list of open problems in the design.",
    "Ordering is only guaranteed within one partition.",
]


def make_commentary(n_summary: int = 11, **update) -> Commentary:
    commentary = Commentary(
        tldr=[
            "A queue that handles 1.5 million messages per second.",
            "Late acknowledgement makes crashes safe.",
            "Back-pressure protects slow consumers.",
        ],
        summary=" ".join(SUMMARY_SENTENCES[:n_summary]),
        projects=[
            "**Data pipelines** — our ingest could use late acknowledgement.",
            "**General** — worth reading for anyone running queues.",
        ],
        similar_tech=[SimilarTech(name="Kafka", note="partitioned log")],
        usage=StageUsage(
            model="offline/extractive", prompt_name="stage_b", prompt_version="file:def"
        ),
    )
    return commentary.model_copy(update=update)
