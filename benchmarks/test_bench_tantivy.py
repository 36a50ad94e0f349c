"""pytest-benchmark suite of the retriever "tantivy" alone: its two scorers side by side.

tantivy's own BM25 serves k1=1.2, b=0.75 (the fast path); any other k1/b goes through the
Rust scorer of rare_bm25_rs. Both are timed at 2 threads on the same corpus and queries
after checking that each serves the path it claims. Run with ``make bench``.
"""

from __future__ import annotations

import pytest
from bench_data import WIKI

from rare_bm25_rs import TantivyRetriever


@pytest.fixture(scope="module")
def scorers(datasets):
    data = datasets[WIKI]
    built = {}
    for label, options in (("tantivy k1=1.2 b=0.75", {}), ("ours k1=0.9 b=0.4",
                                                          {"k1": 0.9, "b": 0.4})):
        retriever = TantivyRetriever(**options)
        retriever.index(data.ids, data.texts)
        retriever.commit()
        built[label] = retriever
    return built


@pytest.mark.benchmark(group=f"search top-100, 2 threads, by scorer: {WIKI}")
@pytest.mark.parametrize("scorer", ["tantivy k1=1.2 b=0.75", "ours k1=0.9 b=0.4"],
                         ids="scorer={}".format)
def test_scorers(benchmark, scorers, datasets, scorer: str) -> None:
    retriever, queries = scorers[scorer], datasets[WIKI].queries
    assert retriever.uses_fast_path is scorer.startswith("tantivy")
    hits = benchmark(retriever.search_batch, queries, 100, threads=2)
    assert len(hits) == len(queries)
