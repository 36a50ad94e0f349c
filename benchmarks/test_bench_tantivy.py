"""pytest-benchmark suite of the retriever "tantivy" (rare_bm25_rs) on wiki205k.

Off by default (the repo's addopts has --benchmark-disable; each test then runs once, as a
smoke test). Switch it on with:

    .venv/bin/python -m pytest benchmarks/test_bench_tantivy.py --benchmark-enable

RARE_BENCH_DOCS=N limits the corpus to its first N passages (default: all 205,101).
Thread counts are pinned per test; results are checked to be identical across thread counts
before anything is timed.
"""

from __future__ import annotations

import os

import pytest
from bench_mining_backends import DATA, load

from rare_bm25_rs import TantivyRetriever

THREADS = [1, 2]
DOCS = int(os.environ.get("RARE_BENCH_DOCS", "0"))
GROUP = f"wiki205k{'' if not DOCS else f'[:{DOCS}]'}"


@pytest.fixture(scope="module")
def corpus():
    if not (DATA / "corpus.jsonl.gz").exists():
        pytest.fail(f"shared data missing: {DATA}")
    ids, texts, qids, queries, qrels = load(DATA, DOCS, 0)
    positives = [next(iter(qrels[q])) for q in qids]
    return ids, texts, queries, positives


@pytest.fixture(scope="module")
def index(corpus):
    ids, texts, _, _ = corpus
    retriever = TantivyRetriever()
    retriever.index(ids, texts)
    retriever.commit()
    return retriever


@pytest.fixture(scope="module")
def tuned_index(corpus):
    ids, texts, _, _ = corpus
    retriever = TantivyRetriever(k1=0.9, b=0.4)
    retriever.index(ids, texts)
    retriever.commit()
    return retriever


@pytest.mark.benchmark(group=f"build: {GROUP}")
def test_build(benchmark, corpus) -> None:
    ids, texts, _, _ = corpus

    def build() -> TantivyRetriever:
        retriever = TantivyRetriever()
        retriever.index(ids, texts)
        retriever.commit()
        return retriever

    retriever = benchmark.pedantic(build, rounds=3, iterations=1)
    assert len(retriever) == len(ids)


@pytest.mark.benchmark(group=f"search top-100: {GROUP}")
@pytest.mark.parametrize("threads", THREADS, ids="threads={}".format)
def test_search_batch(benchmark, index, corpus, threads) -> None:
    queries = corpus[2]
    assert index.search_batch(queries[:100], 100, threads=threads) == \
        index.search_batch(queries[:100], 100, threads=1)
    hits = benchmark(index.search_batch, queries, 100, threads=threads)
    assert len(hits) == len(queries)


@pytest.mark.benchmark(group=f"mine num_neg=3 depth=100: {GROUP}")
@pytest.mark.parametrize("threads", THREADS, ids="threads={}".format)
def test_mine(benchmark, index, corpus, threads) -> None:
    _, _, queries, positives = corpus
    one = list(index.mine(queries[:100], positives[:100], 3, threads=1, depth=100))
    assert list(index.mine(queries[:100], positives[:100], 3, threads=threads, depth=100)) == one
    result = benchmark(index.mine, queries, positives, 3, threads=threads, depth=100)
    assert sum(result.shortfall) == 0


@pytest.mark.benchmark(group=f"search top-100, 2 threads, by scorer: {GROUP}")
@pytest.mark.parametrize("scorer", ["tantivy k1=1.2 b=0.75", "ours k1=0.9 b=0.4"])
def test_scorers(benchmark, index, tuned_index, corpus, scorer) -> None:
    retriever = index if scorer.startswith("tantivy") else tuned_index
    assert retriever.uses_fast_path is scorer.startswith("tantivy")
    hits = benchmark(retriever.search_batch, corpus[2], 100, threads=2)
    assert len(hits) == len(corpus[2])
