"""Languages: which one a corpus is in, which analyzers each has, and what to say when a
corpus and its analyzer do not match.

A language is a setting of the whole run (``language="en"`` the default, ``"zh"``, or
``"auto"``, which picks from the script mix of the texts and logs what it picked), carried
by every retriever with the same tokens. ``auto`` reads the share of CJK characters among
the text's tokens (:func:`rare.text.neardup.cjk_share`: each CJK character one token, each
other word one) and picks ``zh`` from :data:`AUTO_ZH_SHARE` up: the Chinese analyzers keep
other words as words, while an English analyzer leaves Chinese unsearchable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from rare.errors import SettingsError
from rare.text.neardup import cjk_share

log = logging.getLogger(__name__)

#: the languages and their analyzers as every backend names them, the default first
ANALYZERS: dict[str, tuple[str, ...]] = {"en": ("rare", "lucene"), "zh": ("cjk", "jieba")}
#: what a ``language`` setting may be
LANGUAGE_CHOICES = ("en", "zh", "auto")
#: ``auto`` picks ``zh`` when at least this share of the tokens are CJK characters
AUTO_ZH_SHARE = 0.3
#: an English analyzer on texts with more CJK than this gets a warning
ENGLISH_ON_CJK_SHARE = 0.5
# Texts (and characters) the script mix is read from: enough to decide, cheap on any corpus.
SAMPLE_TEXTS = 2000
SAMPLE_CHARS = 400_000


def check_language(language: object, where: str = "language") -> str:
    """``language`` if it is one of :data:`LANGUAGE_CHOICES`, else a :class:`SettingsError`
    listing them."""
    if language not in LANGUAGE_CHOICES:
        raise SettingsError(
            f"unknown {where} {language!r}; known languages: en (English), zh (Chinese), "
            "auto (picks en or zh from the texts' scripts)")
    return str(language)


def check_analyzer(analyzer: str | None, language: str, known: dict[str, tuple[str, ...]],
                   component: str) -> str | None:
    """The analyzer to use for ``language`` (None: the language's default, or undecided while
    the language is ``auto``); an unknown one, or one of another language, is a
    :class:`SettingsError` listing the analyzers ``component`` knows."""
    listing = "; ".join(f"{lang}: {', '.join(names)}" for lang, names in known.items())
    if analyzer is None:
        if language != "auto" and language not in known:
            raise SettingsError(f"{component} has no analyzer for language {language!r}; "
                                f"its analyzers by language: {listing}")
        return None if language == "auto" else known[language][0]
    for lang, names in known.items():
        if analyzer in names:
            if language not in ("auto", lang):
                raise SettingsError(
                    f"{component}: analyzer {analyzer!r} is for language {lang!r}, not "
                    f"{language!r}; set language={lang!r} or pick one of: {listing}")
            return analyzer
    raise SettingsError(f"{component}: unknown analyzer {analyzer!r}; known analyzers by "
                        f"language: {listing}")


def sample(texts: Sequence[str]) -> list[str]:
    """The first texts, up to :data:`SAMPLE_TEXTS` texts and about :data:`SAMPLE_CHARS`
    characters."""
    out: list[str] = []
    size = 0
    for text in texts[:SAMPLE_TEXTS]:
        if not isinstance(text, str):
            continue
        out.append(text[:SAMPLE_CHARS - size])
        size += len(out[-1])
        if size >= SAMPLE_CHARS:
            break
    return out


def detect_language(texts: Sequence[str]) -> tuple[str, float]:
    """(``"zh"`` or ``"en"``, the CJK share it was decided from) for a sample of ``texts``."""
    share = cjk_share(sample(texts))
    return ("zh" if share >= AUTO_ZH_SHARE else "en"), share


def resolve_language(language: str, texts: Sequence[str], where: str) -> str:
    """``language``, or for ``"auto"`` the one :func:`detect_language` picks (logged)."""
    if language != "auto":
        return language
    picked, share = detect_language(texts)
    log.info("%s: language='auto' picked %r (CJK characters are %.0f%% of the tokens of %d "
             "text(s); zh from %.0f%%)", where, picked, 100 * share, min(len(texts),
                                                                        SAMPLE_TEXTS),
             100 * AUTO_ZH_SHARE)
    return picked


def warn_if_mostly_cjk(texts: Sequence[str], analyzer: str, where: str,
                       warn: Callable[..., None] | None = None) -> float:
    """Warn when an English ``analyzer`` meets texts that are mostly CJK; returns the share."""
    share = cjk_share(sample(texts))
    if share > ENGLISH_ON_CJK_SHARE:
        (warn or log.warning)(
            "%s: %.0f%% of the text is CJK (Chinese, Japanese or Korean characters) but the "
            "analyzer is the English %r, which finds little in Chinese; set language='zh' "
            "(rare run --language zh, [pipeline] language = \"zh\", or the retriever's "
            "language='zh'), or language='auto'", where, 100 * share, analyzer)
    return share
