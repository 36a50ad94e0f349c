"""The reference rows of ``rare bench``: BM25 as a Python user gets it from PyPI.

``tantivy-py`` (the ``tantivy`` bindings) and ``bm25s`` are registered as retrievers by this
module's :func:`register_retrievers` hook; the core loads the module as a built-in plugin
(``rare.plugins.BUILTIN_PLUGINS``), so ``rare retrievers`` and ``rare plugins`` list them and
``RARE_DISABLE_PLUGINS=rare.bench.references`` removes them. They are marked
``reference = True``: lists of every backend (``rare bench`` without ``--backends``, the
parity suite; see :func:`rare.retrievers.engines`) leave them out, and they run only when
named. Their packages are imported when one is created, never when this module is, and a
missing one is a :class:`~rare.errors.MissingDependencyError` with its pip line.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rare.errors import MissingDependencyError
from rare.hookspecs import Register, hookimpl
from rare.retriever import Hits, Retriever

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


class ReferenceRetriever(Retriever):
    """A retriever that is a point of comparison, not an engine to mine with by default.

    ``threads`` is the default of :meth:`search_batch` (and the index writer's threads,
    where there is one).
    """

    reference = True
    #: (module imported, pip package providing it) for everything the backend needs
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: why its rankings may differ from Lucene's, said with its disagreement warnings
    note: ClassVar[str] = ""

    def __init__(self, *, threads: int = 1, **options: Any) -> None:
        self.check_installed()
        super().__init__(**options)
        self._threads = threads

    @classmethod
    def missing_packages(cls) -> list[str]:
        """The pip packages of :attr:`requires` that are not installed (nothing imported)."""
        missing = []
        for module, package in cls.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except ValueError:  # imported already, with no __spec__
                found = True
            if not found:
                missing.append(package)
        return missing

    @classmethod
    def check_installed(cls) -> None:
        """Raise :class:`MissingDependencyError` with the pip line when a package is missing."""
        missing = cls.missing_packages()
        if missing:
            raise MissingDependencyError(
                f"the reference backend {cls.name!r} needs {', '.join(missing)}: "
                f"pip install {' '.join(missing)}")

    def import_module(self, module: str) -> Any:
        """Import one of :attr:`requires`; a failure names the pip line."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            package = dict(self.requires).get(module, module)
            raise MissingDependencyError(
                f"the reference backend {self.name!r} needs {package}: pip install {package} "
                f"(import {module} failed: {exc})") from None


class TantivyPy(ReferenceRetriever):
    """The ``tantivy`` PyPI bindings as a Python user drives them: one search call per query
    on a thread pool, ids through a numeric fast field, texts from a dict, mining by rare's
    default :meth:`Retriever.mine`. Analyzer: simple tokenizer, lowercase, tantivy's English
    stop words and Snowball English stemmer (the bindings offer no Porter), so its rankings
    differ a little from Lucene's. Scoring: tantivy's BM25 (k1=1.2, b=0.75, fixed)."""

    name = "tantivy-py"
    analyzers = {"en": ("snowball",)}  # no Chinese analyzer in the bindings
    requires = (("tantivy", "tantivy"),)
    note = ("tantivy-py analyzes with Snowball English (not Porter) and scores with "
            "tantivy's fixed k1=1.2, b=0.75")

    def __init__(self, *, threads: int = 1, **options: Any) -> None:
        super().__init__(threads=threads, **options)
        self.check_analyzer(None)  # English only
        tantivy = self._tantivy = self.import_module("tantivy")
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("text", tokenizer_name="lucene_en", index_option="freq")
        builder.add_integer_field("row", fast=True)
        self._index = tantivy.Index(builder.build())
        analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
                    .filter(tantivy.Filter.lowercase())
                    .filter(tantivy.Filter.stopword("english"))
                    .filter(tantivy.Filter.stemmer("english")).build())
        self._index.register_tokenizer("lucene_en", analyzer)
        self._writer = self._index.writer(256_000_000, num_threads=threads)
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._searcher: Any = None

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        document = self._tantivy.Document
        for doc_id, text in zip(ids, texts, strict=True):
            self._writer.add_document(document(text=text, row=len(self._ids)))
            self._ids.append(doc_id)
            self._texts[doc_id] = text

    def commit(self) -> None:
        self._writer.commit()
        self._writer.wait_merging_threads()
        self._writer = self._index.writer(256_000_000, num_threads=1)
        self._index.reload()
        self._searcher = self._index.searcher()

    def _search(self, query: str, k: int) -> Hits:
        from rare.text import tokenize

        words = " ".join(tokenize(query))  # no query syntax: a bag of words
        if not words:
            return []
        hits = self._searcher.search(self._index.parse_query(words, ["text"]), k).hits
        rows = self._searcher.fast_field_values("row", [addr for _, addr in hits])
        return [(self._ids[row], score) for (score, _), row in zip(hits, rows, strict=True)]

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        from concurrent.futures import ThreadPoolExecutor

        threads = threads or self._threads
        if threads not in self._pools:
            self._pools[threads] = ThreadPoolExecutor(max_workers=threads)
        return list(self._pools[threads].map(lambda q: self._search(q, k), queries))

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return [self._texts.get(doc_id) for doc_id in ids]

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False)
        self._pools.clear()


class Bm25s(ReferenceRetriever):
    """bm25s (method "lucene") over rare's tokens: lowercase alphanumeric runs, Lucene's stop
    words, PyStemmer's Porter; for Chinese, jieba's words (:class:`rare.text.JiebaAnalyzer`),
    as a Python user would feed it. Texts from a dict; mining by :meth:`Retriever.mine`."""

    name = "bm25s"
    analyzers = {"en": ("rare",), "zh": ("jieba", "cjk")}
    requires = (("bm25s", "bm25s"), ("Stemmer", "PyStemmer"))
    note = ("bm25s tokenizes as rare's Python analyzer does, not as Lucene (Chinese: jieba "
            "words, not CJK bigrams)")

    def __init__(self, *, threads: int = 1, **options: Any) -> None:
        super().__init__(threads=threads, **options)
        self._bm25s = self.import_module("bm25s")  # fail here, not at commit, when missing
        self._stemmer = self.import_module("Stemmer").Stemmer("porter")
        self._zh: Any = None  # the Chinese analyzer, once the language is zh
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._model: Any = None

    @property
    def analyzer_name(self) -> str | None:
        return None if self.language == "auto" else self.analyzers[self.language][0]

    def _tokens(self, texts: Sequence[str]) -> Any:
        from rare.text import LUCENE_ENGLISH_STOPWORDS, make_analyzer

        if self.language == "auto":
            self.observe_texts(texts)
        if self.language == "zh":
            if self._zh is None:
                self._zh = make_analyzer(self.analyzers["zh"][0])
            return [self._zh(text) for text in texts]

        return self._bm25s.tokenize(list(texts), token_pattern=r"(?u)[^\W_]+",
                                    stopwords=sorted(LUCENE_ENGLISH_STOPWORDS),
                                    stemmer=self._stemmer, show_progress=False,
                                    return_ids=False)

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.observe_texts(texts)
        self._ids.extend(ids)
        self._texts.update(zip(ids, texts, strict=True))

    def commit(self) -> None:
        self._model = self._bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._model.index(self._tokens([self._texts[i] for i in self._ids]),
                          show_progress=False)

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        k = min(k, len(self._ids))
        docs, scores = self._model.retrieve(self._tokens(queries), k=k,
                                            n_threads=threads or self._threads,
                                            show_progress=False)
        return [[(self._ids[d], float(s)) for d, s in zip(row, srow, strict=True) if s > 0]
                for row, srow in zip(docs.tolist(), scores.tolist(), strict=True)]

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return [self._texts.get(doc_id) for doc_id in ids]

    def __len__(self) -> int:
        return len(self._ids)


@hookimpl
def register_retrievers(register: Register) -> None:
    register(TantivyPy, name=TantivyPy.name)
    register(Bm25s, name=Bm25s.name)
