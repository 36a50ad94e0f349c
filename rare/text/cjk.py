"""Chinese (and Japanese, Korean) analyzers, token for token the Rust backend's.

- :class:`CJKAnalyzer` (``"cjk"``, the default for ``zh``) gives the tokens of Lucene's
  ``CJKAnalyzer``: full-width ASCII folded to ASCII and half-width katakana to full-width
  (``CJKWidthCharFilter``), lowercase, then a run of adjacent Han, Hiragana, Katakana or
  Hangul characters gives its overlapping bigrams (a run of one character stays a unigram)
  and every other word is a word, cut where Lucene's ``StandardTokenizer`` cuts words
  (``3.14``, ``don't`` and ``snake_case`` stay whole); Lucene's CJK stop words (its English
  list plus "s", "t", "www") are dropped. No stemming: ``running`` stays ``running``.
  Simplified and Traditional Chinese are both Han: nothing is converted.
- :class:`JiebaAnalyzer` (``"jieba"``): the same, except that each CJK run is cut into
  words by jieba's precise mode with its HMM for unknown words (the ``jieba`` package)
  instead of bigrams. The Rust backend segments with the ``jieba-rs`` crate, whose
  dictionary and rules follow jieba's (see :func:`jieba_terms`).

The Rust backend implements both (``rare_bm25_rs/src/cjk.rs``); ``tests`` compare them.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from rare.text.english import LUCENE_ENGLISH_STOPWORDS

#: CJKAnalyzer's default stop words, as Lucene has them: its English stop words without
#: "an", plus "s", "t" and "www"
CJK_STOPWORDS = (LUCENE_ENGLISH_STOPWORDS - {"an"}) | {"s", "t", "www"}

# The scripts, as character-class ranges (the same as rare_bm25_rs/src/cjk.rs). Han as
# Lucene's tokenizer and bigram filter take it: not 々 (a letter there) nor the radicals.
HAN = ("\u3007\u3021-\u3029\u3038-\u303a\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
       "\U00020000-\U0003ffff")
HIRAGANA = "\u3041-\u3096\u309d-\u309f"
KATAKANA = ("\u3031-\u3035\u309b-\u309c\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u32d0-\u32fe"
            "\u3300-\u3357\uff66-\uff9d")
HANGUL = "\u1100-\u11ff\u3131-\u318e\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff"
CJK = HAN + HIRAGANA + KATAKANA + HANGUL

#: Extended_Pictographic: a token of its own in Lucene's StandardTokenizer (``<EMOJI>``)
EMOJI = ("\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9-\u21aa\u231a-\u231b"
         "\u2328\u2388\u23cf\u23e9-\u23f3\u23f8-\u23fa\u24c2\u25aa-\u25ab\u25b6\u25c0"
         "\u25fb-\u25fe\u2600-\u2605\u2607-\u2612\u2614-\u2685\u2690-\u2705"
         "\u2708-\u2712\u2714\u2716\u271d\u2721\u2728\u2733-\u2734\u2744\u2747\u274c"
         "\u274e\u2753-\u2755\u2757\u2763-\u2767\u2795-\u2797\u27a1\u27b0\u27bf"
         "\u2934-\u2935\u2b05-\u2b07\u2b1b-\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299"
         "\U0001f000-\U0001f0ff\U0001f10d-\U0001f10f\U0001f12f\U0001f16c-\U0001f171"
         "\U0001f17e-\U0001f17f\U0001f18e\U0001f191-\U0001f19a\U0001f1ad-\U0001f1e5"
         "\U0001f201-\U0001f20f\U0001f21a\U0001f22f\U0001f232-\U0001f23a"
         "\U0001f23c-\U0001f23f\U0001f249-\U0001f3fa\U0001f400-\U0001f53d"
         "\U0001f546-\U0001f64f\U0001f680-\U0001f6ff\U0001f774-\U0001f77f"
         "\U0001f7d5-\U0001f7ff\U0001f80c-\U0001f80f\U0001f848-\U0001f84f"
         "\U0001f85a-\U0001f85f\U0001f888-\U0001f88f\U0001f8ae-\U0001f8ff"
         "\U0001f90c-\U0001f93a\U0001f93c-\U0001f945\U0001f947-\U0001faff"
         "\U0001fc00-\U0001fffd")

_CJK_CHAR = re.compile(f"[{CJK}]")
_EMOJI = re.compile(f"[{EMOJI}]")
_CJK_RUN = re.compile(f"[{CJK}]+")
_HAS_TOKEN_CHAR = re.compile(r"[^\W_]")

# -- width folding and lowercasing ------------------------------------------------------
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_HALF_KANA = dict(zip(range(0xFF65, 0xFFA0),
                      "・ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノ"
                      "ハヒフヘホマミムメモヤユヨラリルレロワン\u3099\u309a", strict=True))
_WIDTH: dict[int, int | str] = {**_FULL_WIDTH, **_HALF_KANA}
_NEEDS_COMBINING = re.compile("[\uff9e\uff9f]")


def _composed(mark: str) -> dict[str, str]:
    """Katakana that a voiced (U+3099) or semi-voiced (U+309A) mark turns into one letter."""
    out = {}
    for code in range(0x30A6, 0x30FE):
        base = chr(code)
        joined = unicodedata.normalize("NFC", base + mark)
        if len(joined) == 1:
            out[base] = joined
    return out


_VOICED = {"\uff9e": _composed("\u3099"), "\uff9f": _composed("\u309a")}


def fold_width(text: str) -> str:
    """``CJKWidthCharFilter``: full-width ASCII to ASCII, half-width katakana to full-width;
    a half-width (semi-)voiced mark joins the katakana before it when that has such a form."""
    if text.isascii():
        return text
    if not _NEEDS_COMBINING.search(text):
        return text.translate(_WIDTH)
    out: list[str] = []
    for c in text:
        table = _VOICED.get(c)
        if table is not None and out and out[-1] in table:
            out[-1] = table[out[-1]]
            continue
        out.append(c.translate(_WIDTH))
    return "".join(out)


def lucene_lowercase(text: str) -> str:
    """Lucene's ``LowerCaseFilter``: each character on its own (no final sigma; ``İ`` -> ``i``)."""
    if "\u03a3" not in text and "\u0130" not in text:
        return text.lower()
    return "".join("i" if c == "\u0130" else c.lower() for c in text)


def fold_width_lower(text: str) -> str:
    return lucene_lowercase(fold_width(text))


# -- StandardTokenizer's words (outside CJK runs) ----------------------------------------
# Word-break classes, as rare_bm25_rs/src/analysis.rs has them.
LETTER, NUMERIC, KATAKANA_WB, EXTEND_NUM_LET, IDEOGRAPHIC = 1, 2, 3, 4, 5
MID_LETTER, MID_NUM, MID_NUM_LET, SINGLE_QUOTE, EXTEND, OTHER = 6, 7, 8, 9, 10, 11
_WORD = (LETTER, NUMERIC, KATAKANA_WB, EXTEND_NUM_LET)
_MID = (MID_LETTER, MID_NUM, MID_NUM_LET, SINGLE_QUOTE)
_MID_LETTER_CHARS = frozenset("\u00b7\u0387\u05f4\u2027\ufe13\ufe55\uff1a:")
_MID_NUM_CHARS = frozenset("\u037e\u0589\u060c\u060d\u066c\u07f8\u2044\ufe10\ufe14\ufe50\ufe54"
                           "\uff0c\uff1b,;")
_MID_NUM_LET_CHARS = frozenset("\u2018\u2019\u2024\ufe52\uff07\uff0e.")
_HAN_OR_HIRAGANA = re.compile(f"[{HAN}{HIRAGANA}]")
_KATAKANA = re.compile(f"[{KATAKANA}]")
_CATEGORY_CLASS = {"Nd": NUMERIC, "Pc": EXTEND_NUM_LET, "Mn": EXTEND, "Mc": EXTEND,
                   "Me": EXTEND, "Cf": EXTEND, "Nl": LETTER, "Lu": LETTER, "Ll": LETTER,
                   "Lt": LETTER, "Lm": LETTER, "Lo": LETTER}


@lru_cache(maxsize=8192)
def word_break_class(c: str) -> int:
    if c.isascii():
        if c.isalpha():
            return LETTER
        if c.isdigit():
            return NUMERIC
        if c == "_":
            return EXTEND_NUM_LET
        if c == "'":
            return SINGLE_QUOTE
    if c in _MID_LETTER_CHARS:
        return MID_LETTER
    if c in _MID_NUM_CHARS:
        return MID_NUM
    if c in _MID_NUM_LET_CHARS:
        return MID_NUM_LET
    if c.isascii() or c in "\u200b\u3006":  # zero width space; 〆, not Han script
        return OTHER
    if _EMOJI.match(c):
        return IDEOGRAPHIC  # a token of its own, as an ideograph
    if _HAN_OR_HIRAGANA.match(c):
        return IDEOGRAPHIC
    if _KATAKANA.match(c):
        return KATAKANA_WB
    return _CATEGORY_CLASS.get(unicodedata.category(c), OTHER)


def _joins(prev: int, nxt: int) -> bool:
    return ((prev in (LETTER, NUMERIC) and nxt in (LETTER, NUMERIC))
            or (prev == KATAKANA_WB and nxt == KATAKANA_WB)
            or (prev == EXTEND_NUM_LET and nxt in _WORD)
            or (prev in (LETTER, NUMERIC, KATAKANA_WB) and nxt == EXTEND_NUM_LET))


def _joins_across(prev: int, mid: int, nxt: int) -> bool:
    if prev == LETTER and nxt == LETTER:
        return mid in (MID_LETTER, MID_NUM_LET, SINGLE_QUOTE)
    if prev == NUMERIC and nxt == NUMERIC:
        return mid in (MID_NUM, MID_NUM_LET, SINGLE_QUOTE)
    return False


MAX_TOKEN_CHARS = 255  # StandardAnalyzer.DEFAULT_MAX_TOKEN_LENGTH: longer words are cut

_ASCII_WORD = re.compile(r"[a-z0-9_]+(?:(?:(?<=[a-z])[:.'](?=[a-z])|(?<=[0-9])[,;.'](?=[0-9]))"
                         r"[a-z0-9_]+)*")


def _emit(word: str, out: list[str]) -> None:
    if word.isascii():
        if not word.strip("_"):
            return  # only connectors (``___``): no word
    elif not any(word_break_class(c) not in (EXTEND_NUM_LET, EXTEND, OTHER) for c in word):
        return
    if len(word) <= MAX_TOKEN_CHARS:
        out.append(word)
    else:
        out.extend(word[i:i + MAX_TOKEN_CHARS] for i in range(0, len(word), MAX_TOKEN_CHARS))


def lucene_words(lower: str) -> list[str]:
    """The words of lowercased text as Lucene's ``StandardTokenizer`` cuts them (simplified
    UAX #29, as rare_bm25_rs's analyzer "lucene"): each Han or Hiragana character alone."""
    out: list[str] = []
    if lower.isascii():
        for word in _ASCII_WORD.findall(lower):
            _emit(word, out)
        return out
    n = len(lower)
    start = -1  # where the current word began (-1: none)
    prev = OTHER  # class of its last base character
    i = 0
    while i < n:
        c = lower[i]
        cls = word_break_class(c)
        if cls == EXTEND and start >= 0:
            pass
        elif cls in _WORD:
            if start >= 0 and _joins(prev, cls):
                prev = cls
            else:
                if start >= 0:
                    _emit(lower[start:i], out)
                start, prev = i, cls
        elif cls == IDEOGRAPHIC:
            if start >= 0:
                _emit(lower[start:i], out)
                start = -1
            out.append(c)
        elif cls in _MID and start >= 0:
            j = i + 1  # the next base character, past combining marks
            while j < n and word_break_class(lower[j]) == EXTEND:
                j += 1
            nxt = word_break_class(lower[j]) if j < n else None
            if nxt is not None and _joins_across(prev, cls, nxt):
                prev = nxt
                i = j
            else:
                _emit(lower[start:i], out)
                start = -1
        elif start >= 0:
            _emit(lower[start:i], out)
            start = -1
        i += 1
    if start >= 0:
        _emit(lower[start:], out)
    return out


# -- the analyzers ------------------------------------------------------------------------
def _terms(text: str, cut_run: Callable[[str], Iterable[str]]) -> list[str]:
    """CJK runs of the folded text cut by ``cut_run``, the text between them into words."""
    folded = fold_width_lower(text)
    out: list[str] = []
    stop = CJK_STOPWORDS
    pos = 0
    for match in _CJK_RUN.finditer(folded):
        if match.start() > pos:
            out.extend(w for w in lucene_words(folded[pos:match.start()]) if w not in stop)
        out.extend(cut_run(match.group()))
        pos = match.end()
    if pos < len(folded):
        out.extend(w for w in lucene_words(folded[pos:]) if w not in stop)
    return out


def _bigrams(run: str) -> list[str]:
    """Overlapping bigrams of a CJK run; a run of one character is a unigram."""
    if len(run) == 1:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]


def cjk_terms(text: str) -> list[str]:
    """The terms of the ``cjk`` analyzer (see the module docstring)."""
    return _terms(text, _bigrams)


_jieba_lock = threading.Lock()


@lru_cache(maxsize=1)
def _jieba() -> Any:
    """jieba's default segmenter, its dictionary loaded once (jieba logs that at DEBUG level,
    to stderr: quieted)."""
    try:
        import jieba
    except ImportError as exc:
        from rare.errors import MissingDependencyError

        raise MissingDependencyError(
            "the analyzer 'jieba' needs the jieba package: pip install jieba") from exc
    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba.dt


def jieba_terms(text: str) -> list[str]:
    """The terms of the ``jieba`` analyzer: the ``cjk`` analyzer's, with each CJK run cut
    into jieba's words (precise mode, HMM) instead of bigrams.

    Text outside CJK runs is not given to jieba: jieba-rs (the Rust backend's) and jieba
    cut it differently (jieba-rs keeps ``2.4km`` and ``1-2`` whole, jieba splits them), and
    its English words are cut as the ``cjk`` analyzer cuts them. On CJK runs the two agree
    token for token on ordinary Chinese; they differ where their dictionaries differ
    (jieba-rs lacks ``B超``, which the run split makes moot) and on Han characters outside
    U+4E00..U+9FD5 (〇, 々, extension A), which jieba takes one by one and jieba-rs as Han.
    ``tests`` measure the agreement on the three Chinese sets.
    """
    cut = _jieba().cut
    return _terms(text, lambda run: [w for w in cut(run, HMM=True)
                                      if _HAS_TOKEN_CHAR.search(w)])


class CJKAnalyzer:
    """The ``cjk`` analyzer: Lucene's CJKAnalyzer (CJK bigrams, other words as words)."""

    name = "cjk"
    language = "zh"

    def __call__(self, text: str) -> list[str]:
        return cjk_terms(text)

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [cjk_terms(text) for text in texts]


class JiebaAnalyzer:
    """The ``jieba`` analyzer: jieba word segmentation (precise mode, HMM)."""

    name = "jieba"
    language = "zh"

    def __init__(self) -> None:
        _jieba()  # fail now, not at the first document, when jieba is missing

    def __call__(self, text: str) -> list[str]:
        return jieba_terms(text)

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [jieba_terms(text) for text in texts]


def is_cjk(char: str) -> bool:
    """Whether ``char`` is Han, Hiragana, Katakana or Hangul (a character of CJK bigrams)."""
    return _CJK_CHAR.match(char) is not None
