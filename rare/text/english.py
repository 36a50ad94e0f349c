"""The English analyzer: Lucene's EnglishAnalyzer as far as a Python backend needs.

Lowercase, split into alphanumeric runs, drop Lucene's 33 English stop words, stem with
Porter. The Rust backend's analyzer "rare" gives the same tokens (``tests`` check it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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

    name = "rare"
    language = "en"

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
