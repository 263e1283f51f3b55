"""TF-IDF cosine ranking ("Shared before") equals the textbook formula, term by term, on
random documents; BM25's normalized score is a fraction of the query's best."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from pipeline.ranking import BM25, Vocabulary, tfidf_ranked


def textbook_cosines(docs: list[list[str]], query: list[str]) -> list[float]:
    """log tf x smooth idf, unit length, dot product: written out with dicts."""
    n = len(docs)
    df = Counter(t for d in docs for t in set(d))

    def vector(tokens: list[str]) -> dict[str, float]:
        w = {t: (1 + math.log(f)) * (math.log((1 + n) / (1 + df[t])) + 1)
             for t, f in Counter(tokens).items()}  # fmt: skip
        norm = math.sqrt(sum(x * x for x in w.values()))
        return {t: x / norm for t, x in w.items()} if norm else {}

    q = vector(query)
    return [sum(x * q.get(t, 0.0) for t, x in vector(d).items()) for d in docs]


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_cosines_equal_the_textbook_formula(seed):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    docs = [[rng.choice(words) for _ in range(rng.randint(1, 80))] for _ in range(60)]
    query = [rng.choice(words) for _ in range(30)] + ["never-seen"]
    vocabulary = Vocabulary()
    weights = [vocabulary.weigh(d) for d in docs]
    vocabulary.weigh(["grown-after-weighing"])  # a term no ranked document has
    expected = textbook_cosines(docs, query)
    ranked = tfidf_ranked(query, weights, vocabulary)
    assert [i for i, _ in ranked] == sorted(
        (i for i, s in enumerate(expected) if s > 0), key=lambda i: -expected[i]
    )
    for i, score in ranked:
        assert score == pytest.approx(expected[i], rel=1e-9)
    floor = sorted(expected)[len(expected) // 2]
    assert all(s >= floor for _, s in tfidf_ranked(query, weights, vocabulary, min_score=floor))


def test_same_document_scores_one_and_disjoint_ones_nothing():
    vocabulary = Vocabulary()
    docs = [["redis", "queue", "broker"], ["kafka", "log"], []]
    weights = [vocabulary.weigh(d) for d in docs]
    ranked = tfidf_ranked(["redis", "queue", "broker"], weights, vocabulary)
    assert [i for i, _ in ranked] == [0] and ranked[0][1] == pytest.approx(1.0)
    assert tfidf_ranked([], weights, vocabulary) == []
    assert tfidf_ranked(["redis"], [], vocabulary) == []


def test_bm25_normalized_score_is_a_fraction_of_the_best():
    index = BM25([["redis", "streams", "consumer"], ["kafka", "partitions"]])
    assert index.ranked(["redis", "consumer"])[0][0] == 0
    assert all(0 < s <= 1.0 for _, s in index.ranked(["redis", "consumer"]))
