"""The retriever "tantivy": rare's Retriever protocol over the Rust index in ``_native``.

Python only checks arguments and shapes results; indexing, search and mining run in Rust
with the GIL released, one batch per call, spread over a thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from rare.errors import RetrieverError, SettingsError
from rare.retriever import (
    SKIP_REASONS,
    Hits,
    MineResult,
    Retriever,
    check_mine_args,
    default_threads,
)
from rare.text import NearDuplicateRule
from rare_bm25_rs import _native

log = logging.getLogger(__name__)

__all__ = ["TantivyError", "TantivyRetriever"]


class TantivyError(RetrieverError, _native.Bm25Error):
    """Every failure of this backend: a :class:`rare.RetrieverError` and a ``ValueError``.

    ``kind`` says what went wrong: ``bad_path``, ``incompatible_index``,
    ``invalid_argument``, ``index`` (tantivy failed, e.g. a folder locked by another
    writer), ``closed`` (used after :meth:`TantivyRetriever.close`) or ``internal`` (a bug
    caught before it could crash Python).
    """

    kind: str = "invalid_argument"

    def __init__(self, message: str, kind: str = "invalid_argument") -> None:
        super().__init__(message)
        self.kind = kind


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Re-raise the native ``Bm25Error`` as :class:`TantivyError` (same message and kind)."""
    try:
        yield
    except TantivyError:
        raise
    except _native.Bm25Error as exc:
        raise TantivyError(str(exc), getattr(exc, "kind", "index")) from None


def _strings(values: Sequence[str], what: str) -> list[str]:
    # list("abc") would silently index three one-letter documents.
    if isinstance(values, (str, bytes)):
        raise TantivyError(
            f"{what} must be a sequence of str, not a single {type(values).__name__}")
    return values if isinstance(values, list) else list(values)


class TantivyRetriever(Retriever):
    """BM25 over a tantivy index, in RAM or in a folder (``path``), mined in Rust.

    Scores are Lucene's BM25 (k1=1.2, b=0.75 by default). ``scorer="auto"`` (the default)
    and ``"maxscore"`` run ours: any ``k1``/``b``, exact top k by block-max MaxScore, the
    fastest here at every query length measured. ``"tantivy"`` runs tantivy's own scorer
    (k1=1.2, b=0.75 only; its scores divided by ``k1 + 1`` to Lucene's scale).

    ``language``: ``"en"`` (default), ``"zh"``, or ``"auto"`` (picked from the first batch
    indexed; a saved index's own). ``analyzer``: for ``en``, ``"lucene"`` (default)
    tokenizes and stems as Lucene's EnglishAnalyzer does and ``"rare"`` is exactly
    :class:`rare.EnglishAnalyzer`, token for token, as rare's Python backends analyze; for
    ``zh``, ``"cjk"`` (default) gives the tokens of Lucene's CJKAnalyzer (CJK bigrams, other
    words kept) and ``"jieba"`` segments words with jieba-rs. A saved index keeps the
    language and analyzer it was built with (analyzer None: take it from the folder);
    opening it with another is an ``incompatible_index`` error saying which it has.

    ``path`` opens the index a folder already holds (built by this class), else creates
    one there; documents are searchable after :meth:`commit`, and any read commits pending
    documents first. :meth:`close` (or leaving a ``with`` block) releases the folder lock.
    """

    name = "tantivy"
    analyzers = {"en": ("lucene", "rare"), "zh": ("cjk", "jieba")}

    def __init__(self, *, k1: float = 1.2, b: float = 0.75,
                 near_duplicate: NearDuplicateRule | None = NearDuplicateRule(),  # noqa: B008
                 path: str | os.PathLike[str] | None = None, scorer: str = "auto",
                 writer_heap_bytes: int = 256_000_000, writer_threads: int | None = None,
                 language: str = "en", analyzer: str | None = None) -> None:
        try:
            super().__init__(k1=k1, b=b, near_duplicate=near_duplicate, language=language)
            self.check_analyzer(analyzer)
        except (RetrieverError, SettingsError) as exc:
            raise TantivyError(str(exc)) from None
        self.path = None if path is None else os.fspath(path)
        self._handle: _native.Bm25Index | None = None
        self._settings = dict(k1=self.k1, b=self.b, scorer=scorer,
                              writer_heap_bytes=writer_heap_bytes,
                              writer_threads=min(_threads(writer_threads), 8),
                              analyzer=analyzer)
        saved = self.path is not None and Path(self.path, "meta.json").exists()
        # `auto` waits for the first batch of a new index; a saved index has its language.
        if self.language != "auto" or saved:
            self._open(None if self.language == "auto" else self.language)

    def _open(self, language: str | None) -> _native.Bm25Index:
        with _translated():
            handle = _native.Bm25Index(self.path, language=language, **self._settings)
        self._handle = handle
        self.language = str(handle.language)
        return handle

    def __repr__(self) -> str:
        where = repr(self.path) if self.path else "RAM"
        state = ("closed" if self._closed else "language='auto', no index yet"
                 if self._handle is None else
                 f"language={self.language!r}, analyzer={self.analyzer!r}")
        return f"TantivyRetriever(k1={self.k1}, b={self.b}, {state}, index={where})"

    @property
    def _index(self) -> _native.Bm25Index:
        """The native index; a :class:`TantivyError` once the retriever is closed."""
        index = self._handle
        if index is None and not self._closed:
            # `auto` with nothing indexed yet: there is nothing to tell the language from.
            log.info("tantivy retriever: language='auto' with no text indexed yet: 'en'")
            self.language = "en"
            index = self._open("en")
        if index is None:
            raise TantivyError(
                "this tantivy retriever is closed (close() was called, or its `with` block "
                "ended); create a new one to use it again"
                + (f", e.g. TantivyRetriever(path={self.path!r})" if self.path else ""),
                kind="closed",
            )
        return index

    def _check_open(self) -> None:
        self._index  # noqa: B018 - raises once closed

    @property
    def analyzer(self) -> str:
        """The index's analyzer: "lucene", "rare", "cjk" or "jieba"."""
        return str(self._index.analyzer)

    @property
    def analyzer_name(self) -> str | None:
        return None if self._handle is None else str(self._handle.analyzer)

    @property
    def scorer(self) -> str:
        """The scorer that runs: "maxscore" (ours) or "tantivy"."""
        return str(self._index.scorer)

    # -- the Retriever protocol ------------------------------------------------------------
    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        ids, texts = _strings(ids, "ids"), _strings(texts, "texts")
        if len(ids) != len(texts):
            raise TantivyError(f"index() got {len(ids)} ids but {len(texts)} texts")
        if self._handle is None and not self._closed:
            self._open(self.observe_texts(texts))
        else:
            self.observe_texts(texts)
        with _translated():
            self._index.add(ids, texts)

    def commit(self) -> None:
        with _translated():
            self._index.commit()

    def close(self) -> None:
        """Commit, let merges finish, release the writer's lock on the folder and drop the
        index (a RAM index's memory goes with it). Calling it again does nothing."""
        index = self._handle
        if index is None:
            if not self._closed:
                super().close()
            return
        try:
            with _translated():
                index.close()
        finally:
            self._handle = None
            super().close()

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        queries = _strings(queries, "queries")
        if k < 1:
            raise TantivyError(f"k must be >= 1, got {k}")
        with _translated():
            return self._index.search_batch(queries, k, _threads(threads))

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        with _translated():
            return self._index.get_texts(_strings(ids, "ids"))

    def __len__(self) -> int:
        with _translated():
            return len(self._index)

    def score_texts(self, queries: Sequence[str], texts: Sequence[str]) -> list[float]:
        """Each text's score for its query as a document of this index, in Rust (the
        text's length rounded to a one-byte fieldnorm, as an indexed document's is)."""
        queries, texts = _strings(queries, "queries"), _strings(texts, "texts")
        if len(queries) != len(texts):
            raise TantivyError(f"score_texts() got {len(queries)} queries but "
                               f"{len(texts)} texts")
        with _translated():
            return self._index.score_texts(queries, texts)

    def mine(self, queries: Sequence[str], positive_ids: Sequence[str], num_neg: int,
             start_rank: int = 0, threads: int | None = None, depth: int | None = None,
             positive_texts: Sequence[str | None] | None = None, *,
             end_rank: int | None = None, sampling: str = "top", seed: int = 0,
             max_score_ratio: float | None = None,
             min_score_gap: float | None = None) -> MineResult:
        """Hard negatives for every query, as :meth:`rare.Retriever.mine`, all in Rust.

        The whole batch runs without the GIL: search (a short search first, four times
        deeper each time a query runs out, up to ``depth``), drop the positive, apply the
        margin and the window, take the window's candidates in rank order or draw them,
        and skip those the near-duplicate rule says repeat the positive (only the ones
        taken are read) until ``num_neg`` are kept.
        """
        queries = _strings(queries, "queries")
        positive_ids = _strings(positive_ids, "positive_ids")
        try:
            check_mine_args(queries, positive_ids, num_neg, start_rank, end_rank, sampling,
                            max_score_ratio, min_score_gap)
        except RetrieverError as exc:
            raise TantivyError(str(exc)) from None
        texts = None
        if positive_texts is not None:
            if isinstance(positive_texts, (str, bytes)):
                raise TantivyError("positive_texts must be a sequence of str or None")
            texts = list(positive_texts)
            if len(texts) != len(queries):
                raise TantivyError(
                    f"mine() got {len(queries)} queries but {len(texts)} positive texts"
                )
        rule = self.near_duplicate
        rule_args = None if rule is None else (rule.ngram, rule.min_shared, rule.min_fraction)
        with _translated():
            negatives, scores, ranks, pos_scores, in_index, skipped = self._index.mine(
                queries, positive_ids, num_neg, start_rank=start_rank,
                threads=_threads(threads),
                depth=depth,
                positive_texts=texts, near_duplicate=rule_args, end_rank=end_rank,
                sampling=sampling, seed=seed & _MASK64, max_score_ratio=max_score_ratio,
                min_score_gap=min_score_gap,
            )
        return MineResult(negatives, scores, num_neg, ranks=ranks, positive_scores=pos_scores,
                          positive_in_index=in_index, skipped=dict(zip(SKIP_REASONS, skipped)))


_MASK64 = (1 << 64) - 1


def _threads(threads: int | None) -> int:
    try:
        return default_threads(threads)
    except RetrieverError as exc:
        raise TantivyError(str(exc)) from None
