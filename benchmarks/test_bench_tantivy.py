"""pytest-benchmark suite of the retriever "tantivy" alone: its two scorers side by side.

Ours ("maxscore", the default: Lucene's BM25 for any k1/b, exact top k by block-max
MaxScore) and tantivy's own ("tantivy", k1=1.2 and b=0.75 only) are timed at 2 threads on
the same corpus and queries, at the mining depth (top-100) and at the short searches that
settle most mining queries (top-10), after checking that both return the same ranking.
Run with ``make bench``.
"""

from __future__ import annotations

import pytest
from bench_data import WIKI

from rare_bm25_rs import TantivyRetriever

SCORERS = ["maxscore", "tantivy"]


@pytest.fixture(scope="module")
def scorers(datasets):
    data = datasets[WIKI]
    built = {}
    for scorer in SCORERS:
        retriever = TantivyRetriever(scorer=scorer)
        retriever.index(data.ids, data.texts)
        retriever.commit()
        assert retriever.scorer == scorer
        built[scorer] = retriever
    ours, theirs = (built[s].search_batch(data.queries[:200], 10) for s in SCORERS)
    agree = sum(len({d for d, _ in a} & {d for d, _ in b}) / 10 for a, b in zip(ours, theirs))
    assert agree / len(ours) >= 0.99, "the two scorers must rank alike before being timed"
    return built


@pytest.mark.benchmark(group=f"search, 2 threads, by scorer: {WIKI}")
@pytest.mark.parametrize("k", [100, 10], ids="top-{}".format)
@pytest.mark.parametrize("scorer", SCORERS, ids="scorer={}".format)
def test_scorers(benchmark, scorers, datasets, scorer: str, k: int) -> None:
    retriever, queries = scorers[scorer], datasets[WIKI].queries
    hits = benchmark(retriever.search_batch, queries, k, threads=2)
    assert len(hits) == len(queries) and all(len(h) == k for h in hits)
