"""The protocol every retriever backend implements, with mining built on top of search."""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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

#: how negatives are chosen among the candidates left in the rank window
SAMPLING = ("top", "random")
#: why a hit was not taken as a negative, in :attr:`MineResult.skipped`
SKIP_REASONS = ("same_id", "near_duplicate", "above_margin", "outside_window")

log = logging.getLogger(__name__)


class MineResult(list[list[str]]):
    """Negatives' ids for each query (a list of lists), plus what mining saw on the way.

    ``shortfall[i]`` is how many negatives query ``i`` is missing (0 when it got
    ``num_neg``); ``scores[i]`` are the BM25 scores of its negatives and ``ranks[i]`` their
    candidate ranks (0: the best hit that is neither the positive, nor above the margin,
    nor a near-duplicate of the positive). ``positive_scores[i]`` is the
    positive's own score for the query in the same index (None when neither its id nor its
    text is known) and ``positive_in_index[i]`` whether its id is in the index (else the
    score is its text's, against the index's statistics). ``skipped`` counts, over the
    whole call, the hits passed over by reason (:data:`SKIP_REASONS`).
    """

    def __init__(self, negatives: list[list[str]], scores: list[list[float]], num_neg: int,
                 *, ranks: list[list[int]] | None = None,
                 positive_scores: Sequence[float | None] | None = None,
                 positive_in_index: Sequence[bool | None] | None = None,
                 skipped: Mapping[str, int] | None = None) -> None:
        super().__init__(negatives)
        self.scores = scores
        self.num_neg = num_neg
        self.shortfall = [max(0, num_neg - len(n)) for n in negatives]
        self.ranks: list[list[int]] = ranks if ranks is not None else [[] for _ in negatives]
        self.positive_scores: list[float | None] = (
            list(positive_scores) if positive_scores is not None else [None] * len(negatives))
        self.positive_in_index: list[bool | None] = (
            list(positive_in_index) if positive_in_index is not None
            else [None] * len(negatives))
        self.skipped: dict[str, int] = {reason: 0 for reason in SKIP_REASONS}
        self.skipped.update(skipped or {})

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


def default_depth(num_neg: int, start_rank: int = 0, end_rank: int | None = None,
                  margin: bool = False, sampling: str = "top") -> int | None:
    """How many hits mining walks at most when the caller does not say.

    With a margin: None, no limit (as deep as the walk needs; a positive that ranks low
    leaves its negatives far down), unless a random draw has no window end. Else
    ``max(50, 4 * (start_rank + num_neg))``, and at least ``end_rank + 10`` with a window
    end (room for the positive and its near-duplicates).
    """
    if margin and (sampling == "top" or end_rank is not None):
        return None
    depth = max(50, 4 * (start_rank + num_neg))
    if end_rank is not None:
        depth = max(depth, end_rank + 10)
    return depth


def first_k(num_neg: int, start_rank: int, end_rank: int | None, sampling: str,
            cap: int) -> int:
    """The hits a first search fetches: usually enough to settle the query (a query that
    runs out searches again, four times deeper each time, up to ``cap``)."""
    if sampling == "top":  # the candidates needed and room for a few skipped hits
        k = max(2 * num_neg, start_rank + num_neg) + 4
    elif end_rank is not None:
        k = end_rank + 4
    else:
        k = cap
    return max(1, min(k, cap))


def check_mine_args(queries: Sequence[str], positive_ids: Sequence[str], num_neg: int,
                    start_rank: int, end_rank: int | None = None, sampling: str = "top",
                    max_score_ratio: float | None = None,
                    min_score_gap: float | None = None) -> None:
    """Raise :class:`RetrieverError` naming the setting when a mining argument is unusable."""
    if len(queries) != len(positive_ids):
        raise RetrieverError(
            f"mine() got {len(queries)} queries but {len(positive_ids)} positive ids"
        )
    check_mining_settings(num_neg, start_rank, end_rank, sampling, max_score_ratio,
                          min_score_gap, error=RetrieverError)


def check_mining_settings(num_neg: int, start_rank: int = 0, end_rank: int | None = None,
                          sampling: str = "top", max_score_ratio: float | None = None,
                          min_score_gap: float | None = None,
                          error: type[Exception] = RetrieverError) -> None:
    """The checks of :func:`check_mine_args` on the settings alone (for an operator's
    constructor); raises ``error``."""
    if num_neg < 1:
        raise error(f"num_neg must be >= 1, got {num_neg}")
    if start_rank < 0:
        raise error(f"start_rank must be >= 0, got {start_rank}")
    if end_rank is not None and end_rank <= start_rank:
        raise error(f"end_rank must be > start_rank (the window is candidate ranks "
                    f"start_rank to end_rank - 1), got start_rank={start_rank}, "
                    f"end_rank={end_rank}")
    if sampling not in SAMPLING:
        raise error(f"sampling must be 'top' or 'random', got {sampling!r}")
    if max_score_ratio is not None and not 0 < max_score_ratio <= 1:
        raise error(f"max_score_ratio must be in (0, 1], got {max_score_ratio}")
    if min_score_gap is not None and not (min_score_gap >= 0 and math.isfinite(min_score_gap)):
        raise error(f"min_score_gap must be >= 0, got {min_score_gap}")


def margin_bound(positive_score: float | None, max_score_ratio: float | None,
                 min_score_gap: float | None) -> float | None:
    """The highest score a candidate may have: ``max_score_ratio * positive`` and
    ``positive - min_score_gap``, the lower of those set; None when neither is set or the
    positive's score is unknown."""
    if positive_score is None:
        return None
    bounds = []
    if max_score_ratio is not None:
        bounds.append(max_score_ratio * positive_score)
    if min_score_gap is not None:
        bounds.append(positive_score - min_score_gap)
    return min(bounds) if bounds else None


_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _MASK
    return h


class SplitMix64:
    """Vigna's SplitMix64, as the Rust backend has it: the same draws in every backend."""

    def __init__(self, state: int) -> None:
        self.state = state & _MASK

    @classmethod
    def for_query(cls, seed: int, query: str, positive_id: str) -> SplitMix64:
        """The generator of one query's draw: FNV-1a of ``query \\x1f positive_id``,
        mixed with the seed (so a draw does not depend on the batch it is in)."""
        key = query.encode("utf-8") + b"\x1f" + positive_id.encode("utf-8")
        return cls(fnv1a64(key) ^ ((seed * _GOLDEN) & _MASK))

    def next(self) -> int:
        self.state = (self.state + _GOLDEN) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self.next() % n


def sample_indices(m: int, n: int, rng: SplitMix64) -> list[int]:
    """``min(n, m)`` distinct indices of ``range(m)`` in the order a partial Fisher-Yates
    shuffle draws them (the first ``j`` of a draw of ``n`` are the draw of ``j``)."""
    pool = list(range(m))
    take = min(n, m)
    for i in range(take):
        j = i + rng.below(m - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:take]


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

    def score_texts(self, queries: Sequence[str], texts: Sequence[str]) -> list[float]:
        """The BM25 score each text would get for its query as a document of this index.

        Scored against the index's statistics (number of documents, document frequencies,
        average length) with the backend's analyzer, as :meth:`search_batch` would score
        an indexed document with that text. Mining uses it for a positive outside the
        hits, and for one the index does not hold. A backend that cannot score a text
        raises ``NotImplementedError`` (mining then needs the positive among the hits to
        know its score).
        """
        raise NotImplementedError(f"{self.name or type(self).__name__} cannot score a text")

    # -- mining, shared by every backend -------------------------------------------------
    def mine(self, queries: Sequence[str], positive_ids: Sequence[str], num_neg: int,
             start_rank: int = 0, threads: int | None = None, depth: int | None = None,
             positive_texts: Sequence[str | None] | None = None, *,
             end_rank: int | None = None, sampling: str = "top", seed: int = 0,
             max_score_ratio: float | None = None,
             min_score_gap: float | None = None) -> MineResult:
        """Hard negatives for each query: BM25 hits that are not its positive.

        Hits are walked best first, at most ``depth`` of them (default:
        :func:`default_depth`; with a margin, as many as the walk needs). A hit is skipped
        when its id is the positive's; when it scores above the margin: above
        ``max_score_ratio`` times the positive's own score for the query, or above that
        score minus ``min_score_gap``. Every other hit is a candidate and gets the next
        rank, 0 first. Then:

        - Window: candidates ranked below ``start_rank`` are skipped (the very top is the
          likeliest to be an unlabelled positive); the walk stops at rank ``end_rank``.
        - Sampling: ``"top"`` takes the window's candidates in rank order; ``"random"``
          draws from all the candidates in the window, seeded by ``seed``, the query and
          the positive's id (reproducible, independent of the batch), and returns them in
          the order drawn.
        - Each candidate taken is checked by the near-duplicate rule against the positive's
          text (``positive_texts[i]``, else the stored one): one that repeats it is skipped
          and the next is taken (the next in rank order, or the next drawn), until
          ``num_neg`` are kept or the window runs out. Only the candidates taken are read
          (about ``num_neg`` texts a query, however wide the window); a near-duplicate
          outside the window counts as outside it.

        The positive's score is the one the index gives it (scored from its text against
        the index's statistics when its id is not in the index; see
        :attr:`MineResult.positive_in_index`).

        Queries that run out are reported in :attr:`MineResult.shortfall`; the skips by
        reason in :attr:`MineResult.skipped`. Every backend gives the same negatives at
        equal settings (up to the order of tied scores).
        """
        self._check_open()
        check_mine_args(queries, positive_ids, num_neg, start_rank, end_rank, sampling,
                        max_score_ratio, min_score_gap)
        if positive_texts is not None and len(positive_texts) != len(queries):
            raise RetrieverError(
                f"mine() got {len(queries)} queries but {len(positive_texts)} positive texts"
            )
        margin = max_score_ratio is not None or min_score_gap is not None
        cap = depth or default_depth(num_neg, start_rank, end_rank, margin, sampling)
        if cap is None:
            cap = max(1, len(self))
        top = sampling == "top"
        n = len(queries)
        k = first_k(num_neg, start_rank, end_rank, sampling, cap)
        hits: list[Hits] = self.search_batch(queries, k, threads=threads)
        rule = self.near_duplicate
        pos_scores: list[float | None] = [None] * n
        in_index: list[bool | None] = [None] * n
        for qi, query_hits in enumerate(hits):
            pos_id = positive_ids[qi]
            found = next((score for doc, score in query_hits if doc == pos_id), None)
            if found is not None:
                pos_scores[qi], in_index[qi] = found, True
        given = list(positive_texts) if positive_texts is not None else [None] * n
        # The stored text of a positive: for the near-duplicate rule when none was given,
        # and to know whether an id outside the hits is in the index.
        lookup = [qi for qi in range(n) if (rule is not None and not given[qi])
                  or in_index[qi] is None]
        stored: dict[int, str | None] = dict(zip(lookup, self.get_texts(
            [positive_ids[qi] for qi in lookup]))) if lookup else {}
        unscored = []
        for qi in range(n):
            if in_index[qi] is None:
                in_index[qi] = stored.get(qi) is not None
                if stored.get(qi) is not None or given[qi]:
                    unscored.append(qi)
        if unscored:
            texts = [stored.get(qi) or given[qi] or "" for qi in unscored]
            try:
                scored: Sequence[float | None] = self.score_texts(
                    [queries[qi] for qi in unscored], texts)
            except NotImplementedError:
                if margin:
                    raise RetrieverError(
                        f"the {self.name or type(self).__name__} retriever cannot score a "
                        f"text (score_texts), so the margin cannot be applied to "
                        f"{len(unscored)} positive(s) outside the top {k} hits"
                    ) from None
                scored = [None] * len(unscored)
            for qi, score in zip(unscored, scored):
                pos_scores[qi] = score
        outside = sum(1 for flag in in_index if not flag)
        if outside and margin:
            log.info("%d of %d positives are not in the index; their scores come from their "
                     "texts against the index's statistics", outside, n)
        walked: list[tuple[list[tuple[int, int]], dict[str, int]] | None] = [None] * n
        checkers: list[_NearDuplicates | None] = [None] * n
        pending = list(range(n))
        while True:
            again = []
            for qi in pending:
                pos_text = given[qi] or stored.get(qi)
                bound = margin_bound(pos_scores[qi], max_score_ratio, min_score_gap)
                counts = dict.fromkeys(SKIP_REASONS, 0)
                checkers[qi] = checker = _NearDuplicates(self, hits[qi],
                                                         pos_text if rule else None)
                kept, settled = self._walk(hits[qi], positive_ids[qi], checker, num_neg,
                                           start_rank, end_rank, top, bound, counts)
                walked[qi] = (kept, counts)
                if not settled and len(hits[qi]) >= k and k < cap:
                    again.append(qi)
            if not again:
                break
            k = min(cap, 4 * k)
            deeper = self.search_batch([queries[qi] for qi in again], k, threads=threads)
            for qi, query_hits in zip(again, deeper):
                hits[qi] = query_hits
            pending = again
        negatives: list[list[str]] = []
        scores: list[list[float]] = []
        ranks: list[list[int]] = []
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        for qi in range(n):
            entry = walked[qi]
            assert entry is not None
            kept, counts = entry
            for reason, count in counts.items():
                skipped[reason] += count
            if not top:
                drawer = checkers[qi]
                assert drawer is not None
                rng = SplitMix64.for_query(seed, queries[qi], positive_ids[qi])
                kept, near = _draw(kept, num_neg, rng, drawer)
                skipped["near_duplicate"] += near
            query_hits = hits[qi]
            negatives.append([query_hits[i][0] for i, _ in kept])
            scores.append([query_hits[i][1] for i, _ in kept])
            ranks.append([rank for _, rank in kept])
        return MineResult(negatives, scores, num_neg, ranks=ranks, positive_scores=pos_scores,
                          positive_in_index=in_index, skipped=skipped)

    def _walk(self, hits: Hits, positive_id: str, near_duplicate: _NearDuplicates,
              num_neg: int, start_rank: int, end_rank: int | None, top: bool,
              bound: float | None, skipped: dict[str, int]) -> tuple[list[tuple[int, int]], bool]:
        """(index in ``hits``, candidate rank) of the window's candidates, and whether the
        walk ended by its own rules (else the hits ran out first). With ``top``: the first
        ``num_neg`` that are not near-duplicates of the positive (only the candidates taken
        are checked); else every candidate of the window, unchecked (:func:`_draw` checks
        those it draws). Adds to ``skipped``; a hit skipped for several reasons counts
        under the first of: same id, above the margin, outside the window, near-duplicate.
        """
        kept: list[tuple[int, int]] = []
        rank = 0
        for i, (doc_id, score) in enumerate(hits):
            if top and len(kept) == num_neg:
                return kept, True
            if end_rank is not None and rank >= end_rank:
                return kept, True
            if doc_id == positive_id:
                skipped["same_id"] += 1
                continue
            if bound is not None and score > bound:
                skipped["above_margin"] += 1
                continue
            rank += 1
            if rank - 1 < start_rank:
                skipped["outside_window"] += 1
                continue
            if top and near_duplicate([i], max(8, 2 * (num_neg - len(kept))))[0]:
                skipped["near_duplicate"] += 1
                continue
            kept.append((i, rank - 1))
        settled = (top and len(kept) == num_neg) or (end_rank is not None and rank >= end_rank)
        return kept, settled


class _NearDuplicates:
    """Whether hits repeat the positive's text (the retriever's near-duplicate rule; never,
    without a rule or a positive text). Texts are read only for the hits asked about, a
    slice at a time, so a backend whose stored texts are costly to read (a Lucene index on
    disk) reads little more than it uses."""

    def __init__(self, retriever: Retriever, hits: Hits, positive_text: str | None) -> None:
        self.retriever = retriever
        self.hits = hits
        self.rule = retriever.near_duplicate
        self.positive = None if self.rule is None or not positive_text else \
            self.rule.shingles(positive_text)
        self.texts: dict[int, str | None] = {}

    def __call__(self, indices: Sequence[int], ahead: int = 0) -> list[bool]:
        """Whether each hit of ``indices`` is a near-duplicate; with ``ahead``, the texts
        of that many hits from ``indices[0]`` on are read in the same call."""
        rule, positive = self.rule, self.positive
        if rule is None or positive is None:
            return [False] * len(indices)
        wanted = [i for i in indices if i not in self.texts]
        if wanted and ahead:
            wanted += [j for j in range(wanted[0] + 1, min(len(self.hits), wanted[0] + ahead))
                       if j not in self.texts and j not in wanted]
        if wanted:
            self.texts.update(zip(wanted, self.retriever.get_texts(
                [self.hits[j][0] for j in wanted])))
        out = []
        for i in indices:
            text = self.texts[i]
            out.append(text is not None and rule.same(positive, rule.shingles(text)))
        return out


def _draw(candidates: list[tuple[int, int]], num_neg: int, rng: SplitMix64,
          near_duplicate: _NearDuplicates) -> tuple[list[tuple[int, int]], int]:
    """``num_neg`` of ``candidates`` in the order a partial Fisher-Yates shuffle draws them,
    each drawn one checked by the near-duplicate rule (a near-duplicate is left out and the
    draw goes on), and how many near-duplicates were drawn. The texts of a round of draws
    are read together."""
    pool = list(range(len(candidates)))
    m, at, near = len(pool), 0, 0
    out: list[tuple[int, int]] = []
    while len(out) < num_neg and at < m:
        drawn = []
        for _ in range(min(num_neg - len(out), m - at)):
            j = at + rng.below(m - at)
            pool[at], pool[j] = pool[j], pool[at]
            drawn.append(candidates[pool[at]])
            at += 1
        for candidate, dup in zip(drawn, near_duplicate([i for i, _ in drawn])):
            if dup:
                near += 1
            else:
                out.append(candidate)
    return out, near
