"""Text handling every retriever backend shares: the English analyzer and the near-duplicate rule.

The analyzer mirrors Lucene's EnglishAnalyzer as far as a Python backend needs: lowercase,
split into alphanumeric runs, drop Lucene's 33 English stop words, stem with Porter.

The near-duplicate rule decides which retrieved candidates are too close to the positive to
serve as negatives (neighbouring chunks of one document repeat a long passage). Both texts
are lowercased and cut into alphanumeric tokens; each becomes the set of its word n-grams
(``ngram`` tokens in a row; a text shorter than that is one n-gram of all its tokens). A
candidate is a near-duplicate when the two sets share at least ``min_shared`` n-grams (a
common passage of about ``min_shared + ngram - 1`` words) or at least ``min_fraction`` of the
smaller set. The Rust backend implements the same rule; ``tests`` check that they agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

LUCENE_ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the "
    "their then there these they this to was will with".split()
)

_TOKEN = re.compile(r"[^\W_]+")
# English possessives, dropped before tokenizing as Lucene's EnglishPossessiveFilter does.
_POSSESSIVE = re.compile(r"(?<=[^\W_])['\u2019][sS](?![^\W_])")


def tokenize(text: str) -> list[str]:
    """Lowercased alphanumeric runs of ``text``."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=4)
def _stemmer(algorithm: str):  # type: ignore[no-untyped-def]
    import Stemmer  # PyStemmer: Snowball's C stemmers

    return Stemmer.Stemmer(algorithm)


class EnglishAnalyzer:
    """Lowercase, alphanumeric tokens, Lucene's English stop words, Porter stemming."""

    def __init__(self, stemmer: str | None = "porter",
                 stopwords: Iterable[str] | None = LUCENE_ENGLISH_STOPWORDS) -> None:
        self.stopwords = frozenset(stopwords or ())
        self.stemmer_name = stemmer
        self._stem = _stemmer(stemmer).stemWords if stemmer else None

    def __call__(self, text: str) -> list[str]:
        tokens = [t for t in tokenize(_POSSESSIVE.sub("", text)) if t not in self.stopwords]
        if self._stem:
            tokens = [t for t in self._stem(tokens) if t]  # Porter stems a lone "s" to ""
        return tokens

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(text) for text in texts]


@dataclass(frozen=True)
class NearDuplicateRule:
    """Settable thresholds of the near-duplicate rule (see the module docstring)."""

    ngram: int = 8
    min_shared: int = 25
    min_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.min_shared < 1 or not 0 < self.min_fraction <= 1:
            raise ValueError(
                "near-duplicate rule needs ngram >= 1, min_shared >= 1 and 0 < min_fraction <= 1,"
                f" got {self}"
            )

    def shingles(self, text: str) -> frozenset[tuple[str, ...]]:
        tokens = tokenize(text)
        if not tokens:
            return frozenset()
        if len(tokens) < self.ngram:
            return frozenset([tuple(tokens)])
        n = self.ngram
        return frozenset(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))

    def same(self, a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> bool:
        if not a or not b:
            return False
        shared = len(a & b) if len(a) <= len(b) else len(b & a)
        return shared >= self.min_shared or shared >= self.min_fraction * min(len(a), len(b))

    def is_near_duplicate(self, a: str, b: str) -> bool:
        return self.same(self.shingles(a), self.shingles(b))
