"""The near-duplicate rule: which retrieved candidates repeat the positive too closely to
serve as its negatives (neighbouring chunks of one document share a long passage).

Both texts are lowercased and cut into tokens: runs of letters and digits, except that every
CJK character (Han, Kana, Hangul: :func:`rare.text.cjk.is_cjk`) is a token of its own, since
Chinese and Japanese put no spaces between words. So shingles are word n-grams in English
and character n-grams over Chinese text, and one rule serves both, with the same protection:
a word weighs 5, a CJK character 3 (a Chinese word is 1.6 characters on average). Each text
becomes the set of its shingles: from every token, the fewest tokens in a row that weigh
``ngram`` words (8 words of English; 14 characters of Chinese); a text lighter than that is
one shingle of all its tokens. A candidate is a near-duplicate when the shared shingles
weigh at least ``min_shared`` words (each weighs as its first token: a common passage of
about 32 English words, or 55 Chinese characters, some 34 Chinese words) or number at least
``min_fraction`` of the smaller set. In English this is exactly word n-grams. The Rust
backend implements the same rule (``src/neardup.rs``); ``tests`` check that they decide
alike, in English and in Chinese.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rare.text.cjk import CJK

#: what a word and a CJK character weigh in a shingle (``ngram``, ``min_shared`` count words)
WORD_WEIGHT, CJK_WEIGHT = 5, 3

# A CJK character that is a letter or digit, alone; else a run of letters and digits.
_SHINGLE_TOKEN = re.compile(rf"(?=[{CJK}])[^\W_]|[^\W_{CJK}]+")


def shingle_tokens(text: str) -> list[str]:
    """The tokens the near-duplicate rule compares (see the module docstring)."""
    return _SHINGLE_TOKEN.findall(text.lower())


def cjk_share(texts: list[str] | tuple[str, ...]) -> float:
    """The share of CJK characters among the :func:`shingle_tokens` of ``texts`` (a CJK
    character counts one, any other word one); 0.0 when there are no tokens."""
    cjk = total = 0
    for text in texts:
        tokens = shingle_tokens(text)
        total += len(tokens)
        cjk += sum(1 for t in tokens if len(t) == 1 and _SHINGLE_CJK.match(t))
    return cjk / total if total else 0.0


_SHINGLE_CJK = re.compile(f"[{CJK}]")


def _weight(token: str) -> int:
    return CJK_WEIGHT if len(token) == 1 and _SHINGLE_CJK.match(token) else WORD_WEIGHT


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
        tokens = shingle_tokens(text)
        if not tokens:
            return frozenset()
        weights = [_weight(t) for t in tokens]
        n = self.ngram
        if CJK_WEIGHT not in weights:  # words only: plain n-grams
            if len(tokens) < n:
                return frozenset([tuple(tokens)])
            return frozenset(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        target = n * WORD_WEIGHT
        out = set()
        end = total = 0  # tokens[start:end] weighs total
        for start in range(len(tokens)):
            while total < target and end < len(tokens):
                total += weights[end]
                end += 1
            if total < target:
                break
            out.add(tuple(tokens[start:end]))
            total -= weights[start]
        return frozenset(out) if out else frozenset([tuple(tokens)])

    def same(self, a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> bool:
        if not a or not b:
            return False
        shared = a & b if len(a) <= len(b) else b & a
        weighs = sum(_weight(s[0]) for s in shared)
        return (weighs >= self.min_shared * WORD_WEIGHT
                or len(shared) >= self.min_fraction * min(len(a), len(b)))

    def is_near_duplicate(self, a: str, b: str) -> bool:
        return self.same(self.shingles(a), self.shingles(b))
