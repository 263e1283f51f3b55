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


# --- an article for the stage tests (English and Chinese) -----------------------------------
ARTICLE_URL = "https://example.org/blog/vector-search-in-postgres"
ARTICLE = [
    "Benchmarking vector search in PostgreSQL. This post measures pgvector on a retrieval "
    "workload of 10 million embeddings from a support knowledge base.",
    "The embeddings have 768 dimensions and come from a sentence-transformers model. All tests "
    "ran on a single node with 16 cores and 64 GB of memory.",
    "With an HNSW index, query latency at p95 was 38 ms at 200 queries per second. Building the "
    "HNSW index took 41 minutes and used 22 GB of memory.",
    "An IVFFlat index built in 6 minutes but its recall@10 dropped to 0.83. The HNSW index kept "
    "recall@10 at 0.95 with the default search parameters.",
    "Compared to FAISS, pgvector was 2.1 times slower on bulk inserts. Filtering by tenant inside "
    "the same SQL query removed a separate metadata service from the architecture.",
    "Reranking the top 100 results with a cross-encoder improved recall@10 from 0.81 to 0.92. "
    "The reranker added 25 ms of latency per query on a GPU.",
    "Hybrid search that mixes BM25 scores with vector similarity found 7 percent more relevant "
    "documents than vector search alone. Chunks of 300 tokens with 50 tokens of overlap gave the "
    "best results.",
    "Re-indexing the whole corpus after a model change took 5 hours with 8 parallel workers. The "
    "team runs the embedding pipeline nightly in Airflow.",
    "The authors recommend pgvector for teams that already run PostgreSQL and store fewer than "
    "50 million vectors. Beyond that size they suggest a dedicated engine.",
    "The benchmark scripts are open source under the Apache 2.0 licence. The post does not "
    "report costs for managed PostgreSQL services.",
]
CHINESE_ARTICLE = [
    "本文介绍了一个用于大模型推理的开源服务框架。该框架通过连续批处理提高了显卡的利用率。",
    "在八张显卡的集群上，吞吐量比基线系统提高了三倍。首个词元的延迟降低了百分之四十。",
    "框架支持量化模型，内存占用减少了一半。它提供与现有接口兼容的服务端点。",
    "作者在三个公开数据集上评估了生成质量，结果与原始模型基本一致。代码以开源许可证发布。",
]


def make_article_evidence(
    paragraphs: list[str] | None = None,
    *,
    coverage: Coverage = Coverage.full,
    read: ReadKind = ReadKind.full_text,
    title: str = "Benchmarking vector search in PostgreSQL",
    url: str = ARTICLE_URL,
    language: str = "en",
) -> Evidence:
    paragraphs = ARTICLE if paragraphs is None else paragraphs
    return Evidence(
        url=url,
        canonical_url=url,
        adapter="WebPageAdapter",
        sources=[Source(url=url, title=title, authors=["A. Writer"], kind="page")],
        snippets=[Snippet(id=f"S{i}", text=p) for i, p in enumerate(paragraphs, 1)],
        read=read,
        coverage=coverage,
        language=language,
        char_count=sum(map(len, paragraphs)),
    )
