"""pytest-benchmark suites: index build, batch search and hard-negative mining of every
BM25 backend, grouped by phase and corpus, at 1 and 2 threads.

Off in the normal test run (``testpaths`` is ``tests``; addopts has --benchmark-disable);
``make bench`` runs them with timing on. Before a backend is timed it must agree with the
reference engine (top-10 overlap, ``conftest.MIN_OVERLAP``) and give the same scores with
any thread count, so that no speed is reported for different answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from bench_data import BACKENDS, MIN_OVERLAP, K, build, corpus_params

from rare.bench import Dataset
from rare.evaluation import overlap_at_k
from rare.retriever import Hits, Retriever

THREADS = [1, 2]
backends = pytest.mark.parametrize("backend", BACKENDS, ids="backend={}".format)
threads = pytest.mark.parametrize("threads", THREADS, ids="threads={}".format)


def scores_match(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> bool:
    """Same scores rank by rank: results that differ at most in the order of ties."""
    return all(len(x) == len(y) and all(abs(s - t) <= 1e-5 * max(1.0, abs(s))
                                        for s, t in zip(x, y)) for x, y in zip(a, b))


def check_agreement(retriever: Retriever, backend: str, data: Dataset, threads: int,
                    reference: list[list[str]]) -> None:
    one: list[Hits] = retriever.search_batch(data.queries, K, threads=1)
    many = one if threads == 1 else retriever.search_batch(data.queries, K, threads=threads)
    assert scores_match([[s for _, s in h] for h in one], [[s for _, s in h] for h in many])
    overlap = overlap_at_k([[d for d, _ in h[:10]] for h in one], reference, 10)
    assert overlap >= MIN_OVERLAP[backend], f"{backend}: top-10 overlap {overlap:.3f}"


@backends
@pytest.mark.parametrize("corpus", corpus_params("build"))
def test_build(benchmark, datasets, corpus: str, backend: str) -> None:
    data = datasets[corpus]
    retriever = benchmark.pedantic(build, args=(backend, data), rounds=2, iterations=1)
    assert len(retriever) == len(data.ids)


@threads
@backends
@pytest.mark.parametrize("corpus", corpus_params(f"search top-{K}"))
def test_search(benchmark, datasets, indexes, reference_top10, corpus: str, backend: str,
                threads: int) -> None:
    data, retriever = datasets[corpus], indexes[corpus, backend]
    check_agreement(retriever, backend, data, threads, reference_top10[corpus])
    hits = benchmark.pedantic(retriever.search_batch, args=(data.queries, K),
                              kwargs={"threads": threads}, rounds=3, warmup_rounds=1)
    assert len(hits) == len(data.queries)


@threads
@backends
@pytest.mark.parametrize("corpus", corpus_params(f"mine num_neg=3 depth={K}"))
def test_mine(benchmark, datasets, indexes, reference_top10, corpus: str, backend: str,
              threads: int) -> None:
    data, retriever = datasets[corpus], indexes[corpus, backend]
    check_agreement(retriever, backend, data, threads, reference_top10[corpus])

    def mine(threads: int):  # type: ignore[no-untyped-def]
        return retriever.mine(data.queries, data.positives, 3, threads=threads, depth=K)

    assert scores_match(mine(1).scores, mine(threads).scores)
    result = benchmark.pedantic(mine, args=(threads,), rounds=3, warmup_rounds=1)
    assert sum(result.shortfall) == 0
