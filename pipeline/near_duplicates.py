"""Near-duplicate detection between token sets, in near-linear time.

Two sentences repeat each other when the Jaccard similarity of their content words is at least
``NEAR_DUPLICATE``. Comparing each new sentence with every sentence kept so far is quadratic:
on a paper read in full (hundreds of sentences) it was the worker's main CPU cost.

:class:`NearDuplicates` finds exactly the same repeats with prefix filtering (Chaudhuri et al.
2006; Bayardo et al., "Scaling up all pairs similarity search", 2007): order every token set by
one global token order; two sets with Jaccard >= t share at least one token within the first
``n - ceil(t * n) + 1`` tokens of each (their *prefix*). Only the prefixes are indexed, so a
query compares itself with the few kept sets that share a prefix token, and each of those is
then checked with the same :func:`similarity` test as before. Rare tokens first (the order from
a frequency count) keeps the prefixes selective; any fixed order gives the same answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

NEAR_DUPLICATE = 0.7  # Jaccard similarity of content words above which two sentences repeat
# ceil(t * n) computed in floats may come out one too high (0.7 * 10 = 7.000000000000001):
# subtracting a margin far above float error and far below 1 keeps the prefix long enough.
_MARGIN = 1e-6


def similarity(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    """Jaccard similarity of two token sets (0 when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def prefix_length(size: int, threshold: float = NEAR_DUPLICATE) -> int:
    """How many of a set's first tokens (in the global order) must be indexed and probed so
    that every set with Jaccard >= ``threshold`` to it shares one of them."""
    if size <= 0:
        return 0
    min_overlap = max(1, math.ceil(threshold * size - _MARGIN))
    return size - min_overlap + 1


class NearDuplicates:
    """Token sets added so far, and whether a new one repeats any of them.

    ``frequency`` (token -> count over the texts at hand) orders tokens rarest first; tokens
    it does not know count as the rarest. The answers do not depend on it, only the speed."""

    def __init__(
        self, frequency: Mapping[str, int] | None = None, threshold: float = NEAR_DUPLICATE
    ) -> None:
        self._frequency = frequency or {}
        self._threshold = threshold
        self._sets: list[AbstractSet[str]] = []
        self._postings: dict[str, list[int]] = {}

    def _prefix(self, tokens: AbstractSet[str]) -> list[str]:
        freq = self._frequency
        ordered = sorted(tokens, key=lambda t: (freq.get(t, 0), t))
        return ordered[: prefix_length(len(ordered), self._threshold)]

    def repeats(self, tokens: AbstractSet[str]) -> bool:
        """Whether ``tokens`` has Jaccard >= the threshold with a set added before."""
        if not tokens:
            return False  # similarity with an empty set is 0
        checked: set[int] = set()
        for token in self._prefix(tokens):
            for i in self._postings.get(token, ()):
                if i in checked:
                    continue
                checked.add(i)
                if similarity(tokens, self._sets[i]) >= self._threshold:
                    return True
        return False

    def add(self, tokens: AbstractSet[str]) -> None:
        index = len(self._sets)
        self._sets.append(tokens)
        for token in self._prefix(tokens):
            self._postings.setdefault(token, []).append(index)


def token_frequency(sets: Iterable[AbstractSet[str]]) -> dict[str, int]:
    """How many of ``sets`` hold each token (the order :class:`NearDuplicates` wants)."""
    out: dict[str, int] = {}
    for tokens in sets:
        for t in tokens:
            out[t] = out.get(t, 0) + 1
    return out
