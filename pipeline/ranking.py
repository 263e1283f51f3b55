"""Offline ranking over token lists (``pipeline.text.content_tokens``: lower-cased words
without stop words).

``tfidf_ranked`` (cosine of log-tf x idf vectors) compares whole documents with each other:
"Shared before" (is an earlier link about the same thing as this one?). It is symmetric and does
not favour short documents, which matters when one side is a one-line abstract. Documents are
weighed once (``Vocabulary.weigh``) and ranked with numpy, since a channel's history is hundreds
of documents compared at every job.

``BM25`` (Okapi) ranks passages for a short query: the extractive answer to a follow-up question
(the snippets of a job that best match it). ``normalized`` turns a score into a fraction of the
query's best possible score (each query term once in a passage of average length), so one
threshold holds whatever the query length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

K1 = 1.2  # term-frequency saturation (the usual 1.2-2.0)
B = 0.75  # length normalization


@dataclass
class BM25:
    docs: Sequence[Sequence[str]]
    _tf: list[Counter[str]] = field(init=False, repr=False)
    _df: Counter[str] = field(init=False, repr=False)
    _avg_len: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._tf = [Counter(doc) for doc in self.docs]
        self._df = Counter(term for tf in self._tf for term in tf)
        lengths = [len(doc) for doc in self.docs]
        self._avg_len = (sum(lengths) / len(lengths)) if lengths else 0.0

    def idf(self, term: str) -> float:
        n, df = len(self.docs), self._df.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))  # never negative (Lucene's variant)

    def score(self, query: Sequence[str], index: int) -> float:
        tf, length = self._tf[index], len(self.docs[index])
        norm = K1 * (1 - B + B * length / self._avg_len) if self._avg_len else K1
        total = 0.0
        for term in set(query):
            f = tf.get(term, 0)
            if f:
                total += self.idf(term) * f * (K1 + 1) / (f + norm)
        return total

    def best_possible(self, query: Sequence[str]) -> float:
        """The score of a document of average length holding each query term once."""
        return sum(self.idf(term) for term in set(query))

    def normalized(self, query: Sequence[str], index: int) -> float:
        best = self.best_possible(query)
        return self.score(query, index) / best if best else 0.0

    def ranked(self, query: Sequence[str], *, min_score: float = 0.0) -> list[tuple[int, float]]:
        """(document index, normalized score) above ``min_score``, best first; ties keep the
        documents' order."""
        scored = [(i, self.normalized(query, i)) for i in range(len(self.docs))]
        kept = [(i, s) for i, s in scored if s > 0 and s >= min_score]
        return sorted(kept, key=lambda pair: -pair[1])


class Vocabulary:
    """Term -> column number, grown as documents are weighed; shared by every document that
    is ranked together (a process keeps one with the documents it has weighed)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def weigh(self, tokens: Sequence[str]) -> TermWeights:
        """A document's distinct terms and their log tf, ``1 + ln(count)``: what its TF-IDF
        vector needs besides the idf (which depends on the documents it is ranked among)."""
        import numpy as np  # here: the ingest imports this module's callers, not numpy

        counts = Counter(tokens)
        ids = self.ids
        columns = [ids.setdefault(term, len(ids)) for term in counts]
        log_tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        return TermWeights(np.asarray(columns, dtype=np.int64), log_tf)


@dataclass(frozen=True)
class TermWeights:
    columns: Any  # np.ndarray of int64: the document's distinct terms
    log_tf: Any  # np.ndarray of float64: 1 + ln(count), same order


def tfidf_ranked(
    query: Sequence[str],
    docs: Sequence[TermWeights],
    vocabulary: Vocabulary,
    *,
    min_score: float = 0.0,
) -> list[tuple[int, float]]:
    """(document index, cosine) at or above ``min_score`` (and above 0), best first; ties keep
    the documents' order. Cosine of unit-length log-tf x smooth-idf vectors, the idf
    ``ln((1 + n) / (1 + df)) + 1`` (scikit-learn's: a term every document has still counts,
    so one document still compares) over ``docs``. Vectorized: a history of 500 entries costs
    a few ms, where building the vectors term by term cost ~60 ms a job."""
    import numpy as np

    n = len(docs)
    if n == 0:
        return []
    columns = np.concatenate([d.columns for d in docs])
    log_tf = np.concatenate([d.log_tf for d in docs])
    owner = np.repeat(np.arange(n), [len(d.columns) for d in docs])
    width = len(vocabulary) + 1  # the vocabulary may grow meanwhile (another thread weighing)
    idf = np.log((1.0 + n) / (1.0 + np.bincount(columns, minlength=width))) + 1.0
    weights = log_tf * idf[columns]
    norms = np.sqrt(np.bincount(owner, weights=weights * weights, minlength=n))
    counts = Counter(query)
    columns_of = {t: vocabulary.ids.get(t, width) for t in counts}
    known = [(columns_of[t], f) for t, f in counts.items() if columns_of[t] < width]
    unseen_idf = math.log(1.0 + n) + 1.0  # df 0: a term no document has
    query_sq = sum(((1 + math.log(f)) * unseen_idf) ** 2 for t, f in counts.items()
                   if columns_of[t] >= width)  # fmt: skip
    query_vec = np.zeros(width)
    if known:
        q_cols = np.fromiter((c for c, _ in known), dtype=np.int64, count=len(known))
        q_tf = 1.0 + np.log(np.fromiter((f for _, f in known), dtype=np.float64, count=len(known)))
        query_vec[q_cols] = q_tf * idf[q_cols]
        query_sq += float(np.dot(query_vec[q_cols], query_vec[q_cols]))
    if query_sq == 0.0:
        return []
    dots = np.bincount(owner, weights=weights * query_vec[columns], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(norms > 0, dots / (norms * math.sqrt(query_sq)), 0.0)
    order = np.argsort(-scores, kind="stable")
    return [(int(i), float(scores[i])) for i in order if scores[i] > 0 and scores[i] >= min_score]
