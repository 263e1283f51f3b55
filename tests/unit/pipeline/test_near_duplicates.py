"""Near-duplicate detection: the prefix-filtered index finds exactly the repeats that comparing
with every kept sentence finds, and the text work of a job is done once per text."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from pipeline import text as text_module
from pipeline.near_duplicates import (
    NEAR_DUPLICATE,
    NearDuplicates,
    prefix_length,
    similarity,
    token_frequency,
)
from pipeline.offline_selection import candidates
from pipeline.text import citable_sentences, content_tokens, is_citable, split_units


def pairwise_kept(sets: list[frozenset[str]]) -> list[int]:
    """The reference: each set compared with every set kept before it."""
    kept: list[frozenset[str]] = []
    out = []
    for i, tokens in enumerate(sets):
        if any(similarity(tokens, other) >= NEAR_DUPLICATE for other in kept):
            continue
        kept.append(tokens)
        out.append(i)
    return out


def indexed_kept(sets: list[frozenset[str]], frequency: dict[str, int] | None) -> list[int]:
    index = NearDuplicates(frequency)
    out = []
    for i, tokens in enumerate(sets):
        if index.repeats(tokens):
            continue
        index.add(tokens)
        out.append(i)
    return out


def pairwise_citable(texts: Iterable[str]) -> list[str]:
    """``citable_sentences`` as it was: every sentence compared with every kept one."""
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


@pytest.mark.parametrize("seed", range(40))
def test_the_index_keeps_exactly_what_pairwise_comparison_keeps(seed):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(rng.choice([6, 12, 30]))]
    sets: list[frozenset[str]] = []
    for _ in range(120):
        if sets and rng.random() < 0.5:  # a variant of an earlier set: near the threshold
            base = set(rng.choice(sets))
            for _ in range(rng.randint(0, 3)):
                if base and rng.random() < 0.5:
                    base.discard(rng.choice(sorted(base)))
                else:
                    base.add(rng.choice(vocab))
            sets.append(frozenset(base))
        else:
            sets.append(frozenset(rng.sample(vocab, rng.randint(0, min(len(vocab), 12)))))
    expected = pairwise_kept(sets)
    assert indexed_kept(sets, None) == expected
    assert indexed_kept(sets, token_frequency(sets)) == expected


def test_a_set_sharing_exactly_the_threshold_share_repeats():
    # 7 of 10 tokens in common: Jaccard exactly 0.7, where ceil(0.7 * 10) in floats is 8
    a = frozenset(f"t{i}" for i in range(10))
    b = frozenset(f"t{i}" for i in range(7))
    assert similarity(a, b) == 0.7
    index = NearDuplicates()
    index.add(a)
    assert index.repeats(b)
    assert not index.repeats(frozenset(f"t{i}" for i in range(6)))  # 0.6
    assert not index.repeats(frozenset())  # an empty set repeats nothing


def test_prefix_is_long_enough_for_every_size():
    for size in range(1, 200):
        min_overlap = size - prefix_length(size) + 1
        # the largest overlap that still misses the threshold against an equal-sized set
        assert all(o / size < NEAR_DUPLICATE for o in range(min_overlap)), size


def _paragraphs(n: int) -> list[str]:
    rng = random.Random(n)
    words = [
        "queue",
        "broker",
        "worker",
        "message",
        "retry",
        "ack",
        "latency",
        "cluster",
        "shard",
        "replica",
    ]
    out = []
    for _ in range(n):
        sentences = [
            "The " + " ".join(rng.sample(words, 7)) + " handles each request in the cluster."
            for _ in range(5)
        ]
        out.append(" ".join(sentences))
    return out


def test_citable_sentences_match_the_pairwise_algorithm():
    texts = _paragraphs(60)
    kept = citable_sentences(texts)
    assert kept == pairwise_citable(texts)
    assert 0 < len(kept) < 300  # most of the 300 sentences repeat an earlier one


def test_offline_candidates_drop_the_same_repeats():
    items = [(f"S{i}", t) for i, t in enumerate(_paragraphs(40), 1)]
    sentences = [c.text for c in candidates(items) if c.sentence]
    assert sentences == pairwise_citable(t for _, t in items)


def test_a_text_is_split_and_judged_once():
    text = "Brokers replicate every partition to three nodes for safety. " * 3 + "Odd one out."
    text_module.clear_text_caches()
    first = citable_sentences([text])
    second = citable_sentences([text])
    info = text_module.citable_units.cache_info()
    assert first == second == ["Brokers replicate every partition to three nodes for safety."]
    assert (info.hits, info.misses) == (1, 1)
    # the text is kept, not each of its sentences (they would push other jobs' snippets out)
    assert text_module._split_units_cached.cache_info().currsize == 1
    units = split_units(text)
    units.clear()  # a caller's list is its own: the cache keeps its copy
    assert split_units(text)
