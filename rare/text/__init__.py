"""Text handling every retriever backend shares: analyzers per language (the Python twins of
the Rust ones), the near-duplicate rule, and what tells one language from another.

- :mod:`rare.text.english`: :class:`EnglishAnalyzer` (``"rare"``) and :func:`tokenize`;
- :mod:`rare.text.cjk`: :class:`CJKAnalyzer` (``"cjk"``) and :class:`JiebaAnalyzer`
  (``"jieba"``) for Chinese;
- :mod:`rare.text.neardup`: :class:`NearDuplicateRule`, with character shingles over CJK;
- :mod:`rare.text.language`: the ``language`` setting (``en``, ``zh``, ``auto``).
"""

from __future__ import annotations

from collections.abc import Callable

from rare.errors import SettingsError
from rare.text.cjk import CJK_STOPWORDS, CJKAnalyzer, JiebaAnalyzer, cjk_terms, jieba_terms
from rare.text.english import LUCENE_ENGLISH_STOPWORDS, EnglishAnalyzer, tokenize
from rare.text.language import (
    ANALYZERS,
    LANGUAGE_CHOICES,
    check_analyzer,
    check_language,
    detect_language,
    resolve_language,
    warn_if_mostly_cjk,
)
from rare.text.neardup import NearDuplicateRule, cjk_share, shingle_tokens

Analyzer = Callable[[str], list[str]]

#: Python analyzers by name
PYTHON_ANALYZERS: dict[str, Callable[[], Analyzer]] = {
    "rare": EnglishAnalyzer, "cjk": CJKAnalyzer, "jieba": JiebaAnalyzer,
}


def make_analyzer(name: str) -> Analyzer:
    """A new Python analyzer by name: ``"rare"`` (English), ``"cjk"`` or ``"jieba"``."""
    factory = PYTHON_ANALYZERS.get(name)
    if factory is None:
        raise SettingsError(f"unknown analyzer {name!r}; Python analyzers: "
                            f"{', '.join(PYTHON_ANALYZERS)}")
    return factory()


__all__ = [
    "ANALYZERS", "Analyzer", "CJKAnalyzer", "CJK_STOPWORDS", "EnglishAnalyzer", "JiebaAnalyzer",
    "LANGUAGE_CHOICES", "LUCENE_ENGLISH_STOPWORDS", "NearDuplicateRule", "PYTHON_ANALYZERS",
    "check_analyzer", "check_language", "cjk_share", "cjk_terms", "detect_language",
    "jieba_terms", "make_analyzer", "resolve_language", "shingle_tokens", "tokenize",
    "warn_if_mostly_cjk",
]
