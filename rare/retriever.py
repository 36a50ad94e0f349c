"""The protocol every retriever backend implements, with mining built on top of search."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar

from rare.errors import RetrieverError
from rare.text import NearDuplicateRule
from rare.text.language import (
    check_analyzer,
    check_language,
    resolve_language,
    warn_if_mostly_cjk,
)

if TYPE_CHECKING:
    from typing import Self

Hits = list[tuple[str, float]]


class MineResult(list[list[str]]):
    """Negatives' ids for each query (a list of lists), plus what mining could not find.

    ``shortfall[i]`` is how many negatives query ``i`` is missing (0 when it got
    ``num_neg``); ``scores[i]`` are the BM25 scores of its negatives.
    """

    def __init__(self, negatives: list[list[str]], scores: list[list[float]], num_neg: int):
        super().__init__(negatives)
        self.scores = scores
        self.num_neg = num_neg
        self.shortfall = [max(0, num_neg - len(n)) for n in negatives]

    @property
    def short_queries(self) -> list[int]:
        """Indices of the queries that got fewer than ``num_neg`` negatives."""
        return [i for i, missing in enumerate(self.shortfall) if missing]


def default_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else (os.cpu_count() or 1))
    if threads < 1:
        raise RetrieverError(f"threads must be >= 1, got {threads}")
    return threads


def check_mine_args(queries: Sequence[str], positive_ids: Sequence[str], num_neg: int,
                    start_rank: int) -> None:
    if len(queries) != len(positive_ids):
        raise RetrieverError(
            f"mine() got {len(queries)} queries but {len(positive_ids)} positive ids"
        )
    if num_neg < 1:
        raise RetrieverError(f"num_neg must be >= 1, got {num_neg}")
    if start_rank < 0:
        raise RetrieverError(f"start_rank must be >= 0, got {start_rank}")


class Retriever(ABC):
    """A BM25 index over ``(doc_id, text)`` pairs.

    Backends implement :meth:`index`, :meth:`search_batch`, :meth:`get_texts` and
    ``__len__``; :meth:`mine` has a default built on them that backends may replace with a
    faster one keeping the same semantics. Defaults are Lucene's BM25 (k1=1.2, b=0.75).

    A retriever is a context manager: leaving the ``with`` block calls :meth:`close`, which
    releases what the backend holds (memory, files, locks). A backend's constructor takes
    its settings as explicit keyword parameters, the base class's included, so a misspelt
    setting is a ``TypeError`` at once.

    ``language`` (``"en"`` the default, ``"zh"``, or ``"auto"``: picked from the first
    batch of texts indexed, and logged) chooses the analyzer family; :attr:`analyzers` lists
    the analyzers a backend has for each language, its default first. A backend calls
    :meth:`observe_texts` with every batch it indexes: it settles ``auto`` and warns when an
    English analyzer meets mostly CJK text.
    """

    #: registry name, e.g. "gensim"
    name: str = ""
    reference: bool = False  # a point of comparison (rare bench), not in default lists
    #: the analyzers of each language, the default first
    analyzers: ClassVar[dict[str, tuple[str, ...]]] = {"en": ("rare",), "zh": ("cjk", "jieba")}
    # Class attributes too, for a backend whose __init__ does not call the base's.
    _closed: bool = False
    language: str = "en"
    _script_checked: bool = False

    def __init__(self, *, k1: float = 1.2, b: float = 0.75,
                 near_duplicate: NearDuplicateRule | None = NearDuplicateRule(),
                 language: str = "en") -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise RetrieverError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = float(k1)
        self.b = float(b)
        self.near_duplicate = near_duplicate
        self.language = check_language(language)
        self._script_checked = False
        self._closed = False

    # -- language ------------------------------------------------------------------------
    def check_analyzer(self, analyzer: str | None) -> str | None:
        """The analyzer to use for :attr:`language` (None while it is ``auto``): ``analyzer``
        checked against :attr:`analyzers`, or the language's default."""
        return check_analyzer(analyzer, self.language, self.analyzers,
                              f"the {self.name or type(self).__name__} retriever")

    @property
    def analyzer_name(self) -> str | None:
        """The name of the analyzer in use (None while ``language`` is still ``auto``)."""
        return None

    def observe_texts(self, texts: Sequence[str]) -> str:
        """Settle ``language="auto"`` from ``texts`` (the first batch indexed) and warn, once,
        when an English analyzer meets texts that are mostly CJK. Returns the language."""
        what = f"{self.name or type(self).__name__} retriever"
        if self.language == "auto":
            self.language = resolve_language("auto", texts, what)
        if not self._script_checked and texts:
            self._script_checked = True
            if self.language == "en":
                warn_if_mostly_cjk(texts, self.analyzer_name or "English", what)
        return self.language

    # -- lifetime ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Release what the backend holds; calling it again does nothing.

        The default releases nothing and only marks the retriever closed. A backend that
        holds something overrides it (and calls ``super().close()``). After it, a backend's
        methods raise :class:`~rare.errors.RetrieverError` (each starts with
        :meth:`_check_open`); ``close`` alone may be called again.
        """
        self._closed = True

    def _check_open(self) -> None:
        """Raise :class:`~rare.errors.RetrieverError` if this retriever was closed."""
        if self._closed:
            what = self.name or type(self).__name__
            raise RetrieverError(f"this {what} retriever is closed (close() was called, or its "
                                 "`with` block ended); create a new one to use it again")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        k1, b = getattr(self, "k1", None), getattr(self, "b", None)
        return f"{type(self).__name__}(k1={k1}, b={b}, language={self.language!r}, {state})"

    # -- what a backend implements -------------------------------------------------------
    @abstractmethod
    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Add documents; may be called several times, in batches."""

    def commit(self) -> None:
        """Make everything indexed so far searchable (a no-op where indexing is immediate)."""

    @abstractmethod
    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        """Top ``k`` ``(doc_id, score)`` hits for every query, best first."""

    @abstractmethod
    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        """The stored text of each id (None for an unknown id)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of documents searchable now."""

    # -- mining, shared by every backend -------------------------------------------------
    def mine(self, queries: Sequence[str], positive_ids: Sequence[str], num_neg: int,
             start_rank: int = 0, threads: int | None = None, depth: int | None = None,
             positive_texts: Sequence[str | None] | None = None) -> MineResult:
        """Hard negatives for each query: top BM25 hits that are not its positive.

        A hit is skipped when its id is the positive's, or when the near-duplicate rule
        says it repeats the positive's text. The first ``start_rank`` of the remaining hits
        are skipped too (the very top is the likeliest to be an unlabelled positive). Only
        the top ``depth`` hits are examined (default ``max(50, 4 * (start_rank + num_neg))``);
        queries that run out are reported in :attr:`MineResult.shortfall`.
        """
        self._check_open()
        check_mine_args(queries, positive_ids, num_neg, start_rank)
        if positive_texts is not None and len(positive_texts) != len(queries):
            raise RetrieverError(
                f"mine() got {len(queries)} queries but {len(positive_texts)} positive texts"
            )
        depth = depth or max(50, 4 * (start_rank + num_neg))
        hits = self.search_batch(queries, depth, threads=threads)
        rule = self.near_duplicate
        if rule is not None and positive_texts is None:
            positive_texts = self.get_texts(positive_ids)
        negatives: list[list[str]] = []
        scores: list[list[float]] = []
        wanted = start_rank + num_neg
        for qi, query_hits in enumerate(hits):
            pos_id = positive_ids[qi]
            candidates = [(d, s) for d, s in query_hits if d != pos_id]
            pos_text = positive_texts[qi] if positive_texts is not None else None
            if rule is not None and pos_text:
                candidates = self._drop_near_duplicates(candidates, rule, pos_text, wanted)
            chosen = candidates[start_rank:wanted]
            negatives.append([d for d, _ in chosen])
            scores.append([s for _, s in chosen])
        return MineResult(negatives, scores, num_neg)

    def _drop_near_duplicates(self, candidates: Hits, rule: NearDuplicateRule, positive: str,
                              wanted: int) -> Hits:
        """The first ``wanted`` candidates that are not near-duplicates of ``positive``.

        Texts are fetched a window at a time, so a backend whose stored texts are costly to
        read (a Lucene index on disk) reads little more than it keeps.
        """
        pos_sh = rule.shingles(positive)
        kept: Hits = []
        start = 0
        while start < len(candidates) and len(kept) < wanted:
            window = candidates[start:start + max(4, 2 * (wanted - len(kept)))]
            start += len(window)
            for (doc_id, score), text in zip(window, self.get_texts([d for d, _ in window])):
                if text is None or not rule.same(pos_sh, rule.shingles(text)):
                    kept.append((doc_id, score))
                    if len(kept) == wanted:
                        break
        return kept
