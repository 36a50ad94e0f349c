"""gensim's LuceneBM25Model over a sparse term-document matrix: the reference scoring path.

Pure Python and single-threaded; it exists so that faster backends can be checked against
a plain, readable computation of Lucene's BM25.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from rare import NearDuplicateRule, Retriever, RetrieverError, hookimpl
from rare.hookspecs import Register
from rare.retriever import Hits
from rare.text import Analyzer, make_analyzer

# Queries scored together: the sparse product for a chunk stays small.
_CHUNK = 64


class GensimRetriever(Retriever):
    """BM25 (Lucene's formula) with gensim's ``LuceneBM25Model``; k1/b settable.

    ``analyzer``: a name (``"rare"``, English, for ``language="en"``; ``"cjk"``, the
    default, or ``"jieba"`` for ``"zh"``), or any callable from a text to its tokens. The
    Python analyzers of :mod:`rare.text` give the Rust backend's tokens.
    """

    name = "gensim"
    analyzers = {"en": ("rare",), "zh": ("cjk", "jieba")}

    def __init__(self, *, k1: float = 1.2, b: float = 0.75,
                 near_duplicate: NearDuplicateRule | None = NearDuplicateRule(),
                 language: str = "en", analyzer: str | Analyzer | None = None) -> None:
        super().__init__(k1=k1, b=b, near_duplicate=near_duplicate, language=language)
        self._analyzer_arg: str | None = None
        self.analyzer: Analyzer | None = None
        if analyzer is None or isinstance(analyzer, str):
            self._analyzer_arg = analyzer
            name = self.check_analyzer(analyzer)
            if name is not None:
                self.analyzer = make_analyzer(name)
        else:
            self.analyzer = analyzer
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._tokens: list[list[str]] = []
        self._committed = 0
        self._dictionary: Any = None
        self._weights: Any = None  # terms x docs, CSR
        self._model: Any = None

    @property
    def analyzer_name(self) -> str | None:
        if self.analyzer is None:
            return None
        return str(getattr(self.analyzer, "name", type(self.analyzer).__name__))

    def _analyzer(self, texts: Sequence[str]) -> Analyzer:
        """The analyzer, settled from ``texts`` when the language is ``auto``."""
        if self.analyzer is None:
            self.observe_texts(texts)
            name = self.check_analyzer(self._analyzer_arg)
            assert name is not None
            self.analyzer = make_analyzer(name)
        return self.analyzer

    def close(self) -> None:
        """Drop the documents, their tokens and the BM25 matrix."""
        self._ids, self._texts, self._tokens = [], {}, []
        self._dictionary = self._weights = self._model = None
        self._committed = 0
        super().close()

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self._check_open()
        if len(ids) != len(texts):
            raise RetrieverError(f"index() got {len(ids)} ids but {len(texts)} texts")
        analyzer = self._analyzer(texts)
        self.observe_texts(texts)
        for doc_id, text in zip(ids, texts):
            doc_id = str(doc_id)
            if doc_id in self._texts:
                raise RetrieverError(f"duplicate document id {doc_id!r}")
            if not isinstance(text, str):
                raise RetrieverError(f"document {doc_id!r}: text must be str, got "
                                     f"{type(text).__name__}")
            self._texts[doc_id] = text
            self._ids.append(doc_id)
            self._tokens.append(analyzer(text))

    def commit(self) -> None:
        from gensim.corpora import Dictionary
        from gensim.matutils import corpus2csc
        from gensim.models.bm25model import LuceneBM25Model

        self._check_open()
        if self._committed == len(self._ids) and self._weights is not None:
            return
        dictionary = Dictionary(self._tokens)
        bows = [dictionary.doc2bow(tokens) for tokens in self._tokens]
        model = LuceneBM25Model(dictionary=dictionary, k1=self.k1, b=self.b)
        weights = corpus2csc((model[bow] for bow in bows), num_terms=len(dictionary),
                             num_docs=len(bows), dtype=np.float64)
        self._dictionary = dictionary
        self._weights = weights.tocsr()
        self._model = model
        self._committed = len(self._ids)

    def __len__(self) -> int:
        self._check_open()
        return self._committed

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        self._check_open()
        return [self._texts.get(str(doc_id)) for doc_id in ids]

    def score_texts(self, queries: Sequence[str], texts: Sequence[str]) -> list[float]:
        """Each text's score for its query as a document of this index (exact lengths, as
        gensim scores the indexed ones)."""
        self._check_open()
        if len(queries) != len(texts):
            raise RetrieverError(f"score_texts() got {len(queries)} queries but "
                                 f"{len(texts)} texts")
        if self._committed != len(self._ids) or self._weights is None:
            self.commit()
        dictionary, model = self._dictionary, self._model
        if not len(dictionary):
            return [0.0] * len(queries)
        out = []
        for query, text in zip(queries, texts):
            tokens = self.analyzer(text)
            counts = Counter(tokens)
            norm = self.k1 * (1 - self.b + self.b * len(tokens) / model.avgdl)
            score = 0.0
            for term_id, count in dictionary.doc2bow(self.analyzer(query)):
                tf = counts.get(dictionary[term_id], 0)
                if tf:
                    score += count * model.idfs[term_id] * tf / (tf + norm)
            out.append(score)
        return out

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        from scipy.sparse import csr_matrix

        self._check_open()
        if k < 1:
            raise RetrieverError(f"k must be >= 1, got {k}")
        if self._committed != len(self._ids) or self._weights is None:
            self.commit()
        results: list[Hits] = []
        n_terms = len(self._dictionary)
        for start in range(0, len(queries), _CHUNK):
            chunk = queries[start:start + _CHUNK]
            rows, cols, vals = [], [], []
            analyzer = self._analyzer(chunk)
            for qi, query in enumerate(chunk):
                for term_id, count in self._dictionary.doc2bow(analyzer(query)):
                    rows.append(qi)
                    cols.append(term_id)
                    vals.append(float(count))
            q = csr_matrix((vals, (rows, cols)), shape=(len(chunk), n_terms))
            scores = (q @ self._weights).tocsr()
            for qi in range(len(chunk)):
                lo, hi = scores.indptr[qi], scores.indptr[qi + 1]
                docs, vals_q = scores.indices[lo:hi], scores.data[lo:hi]
                if len(docs) > k:
                    top = np.argpartition(-vals_q, k - 1)[:k]
                    docs, vals_q = docs[top], vals_q[top]
                order = np.lexsort((docs, -vals_q))  # best first, ties by index order
                results.append([(self._ids[docs[j]], float(vals_q[j])) for j in order])
        return results


@hookimpl
def register_retrievers(register: Register) -> None:
    register(GensimRetriever, name="gensim")
