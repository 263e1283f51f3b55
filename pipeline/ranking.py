"""Offline ranking in pure Python, over token lists (``pipeline.text.content_tokens``:
lower-cased words without stop words).

``TfIdf`` (cosine of log-tf x idf vectors) compares whole documents with each other: "Shared
before" (is an earlier link about the same thing as this one?). It is symmetric and does not
favour short documents, which matters when one side is a one-line abstract.

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


@dataclass
class TfIdf:
    docs: Sequence[Sequence[str]]
    _vectors: list[dict[str, float]] = field(init=False, repr=False)
    _df: Counter[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._df = Counter(term for doc in self.docs for term in set(doc))
        self._vectors = [self.vector(doc) for doc in self.docs]

    def vector(self, tokens: Sequence[str]) -> dict[str, float]:
        """Unit-length weights: log tf x smooth idf, ``ln((1 + n) / (1 + df)) + 1``
        (scikit-learn's): a term every document has still counts, so an index of one
        document still compares."""
        n = len(self.docs)
        weights = {
            term: (1 + math.log(f)) * (math.log((1 + n) / (1 + self._df.get(term, 0))) + 1)
            for term, f in Counter(tokens).items()
        }
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()} if norm else {}

    def ranked(self, tokens: Sequence[str], *, min_score: float = 0.0) -> list[tuple[int, float]]:
        """(document index, cosine) at or above ``min_score`` (and above 0), best first."""
        query = self.vector(tokens)
        scored = [
            (i, sum(w * query.get(t, 0.0) for t, w in vec.items()))
            for i, vec in enumerate(self._vectors)
        ]
        kept = [(i, s) for i, s in scored if s > 0 and s >= min_score]
        return sorted(kept, key=lambda pair: -pair[1])
