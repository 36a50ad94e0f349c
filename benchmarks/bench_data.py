"""What the benchmark suites share: corpora, backends, agreement thresholds, building.

Corpora: CACM (3,204 documents, 64 topics) and the first ``RARE_BENCH_DOCS`` passages of
wiki205k (default 20,000; 0 = all 205,101) with its 1,000 queries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import rare.retrievers
from rare.bench import Dataset, DataSpec, make_backend
from rare.bench.backends import missing_packages, reference_names
from rare.retriever import Retriever

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DOCS = int(os.environ.get("RARE_BENCH_DOCS", "20000"))
WIKI = f"wiki205k {DOCS // 1000}k docs" if DOCS else "wiki205k all docs"
CORPORA = {
    "cacm": DataSpec(str(DATA / "cacm" / "cacm.jsonl"), str(DATA / "cacm" / "topics.cacm.txt"),
                     str(DATA / "cacm" / "qrels.cacm.txt")),
    WIKI: DataSpec(str(DATA / "wiki205k" / "corpus.jsonl.gz"),
                   str(DATA / "wiki205k" / "queries.tsv"), str(DATA / "wiki205k" / "qrels.txt"),
                   max_docs=DOCS or None),
}
# Registered engines first, then the reference rows whose packages are installed.
BACKENDS = [name for name in ("tantivy", "pyserini", "gensim")
            if name in rare.retrievers.engines()] + [
    name for name in ("tantivy-py", "bm25s")
    if name in reference_names() and not missing_packages(name)]
# Top-10 overlap each backend must reach with the reference engine before it is timed:
# the engines implement Lucene's BM25 over Lucene-like analysis; the reference rows
# analyze differently (tantivy-py: Snowball stemmer; bm25s: rare's tokenizer).
MIN_OVERLAP = {"tantivy": 0.95, "pyserini": 0.95, "gensim": 0.9, "tantivy-py": 0.7,
               "bm25s": 0.9}
K = 100


def corpus_params(phase: str) -> list[object]:
    """One parameter per corpus, each in its own pytest-benchmark group ``"<phase>: <corpus>"``."""
    return [pytest.param(name, id=f"corpus={name.split()[0]}",
                         marks=pytest.mark.benchmark(group=f"{phase}: {name}"))
            for name in CORPORA]


def build(backend: str, data: Dataset, threads: int = 2) -> Retriever:
    retriever = make_backend(backend, threads, 1.2, 0.75)
    retriever.index(data.ids, data.texts)
    retriever.commit()
    return retriever
