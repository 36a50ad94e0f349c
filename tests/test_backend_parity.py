"""One suite for every registered BM25 backend: same corpus, same queries, same answers."""

from __future__ import annotations

import itertools

import pytest
from conftest import shared

import rare.retrievers
from rare.evaluation import ndcg, overlap_at_k, read_qrels, read_topics

# Every registered engine; the references (tantivy-py, bm25s: Retriever.reference) analyze
# differently and are compared by `rare bench` only when named.
BACKENDS = rare.retrievers.engines()
SETTINGS = [(1.2, 0.75), (0.9, 0.4)]


@pytest.fixture(scope="module")
def cacm(cacm_docs):
    topics = read_topics(shared("cacm", "topics.cacm.txt"))
    qrels = read_qrels(shared("cacm", "qrels.cacm.txt"))
    qids = sorted(topics, key=int)
    return cacm_docs, qids, [topics[q] for q in qids], qrels


@pytest.fixture(scope="module")
def runs(cacm):
    """Top-100 ids per backend and k1/b setting, each backend indexed once per setting."""
    docs, qids, queries, _ = cacm
    out = {}
    for name, (k1, b) in itertools.product(BACKENDS, SETTINGS):
        retriever = rare.retrievers.create(name, k1=k1, b=b)
        retriever.index([d["id"] for d in docs], [d["contents"] for d in docs])
        retriever.commit()
        hits = retriever.search_batch(queries, 100, threads=2)
        out[name, k1, b] = [[doc_id for doc_id, _ in h] for h in hits]
        if hasattr(retriever, "close"):
            retriever.close()
    return out


@pytest.mark.parametrize("k1,b", SETTINGS, ids=[f"k1={k1}-b={b}" for k1, b in SETTINGS])
def test_ndcg_agrees_across_backends(cacm, runs, k1, b):
    _, qids, _, qrels = cacm
    scores = {name: ndcg(dict(zip(qids, runs[name, k1, b])), qrels, 10) for name in BACKENDS}
    assert all(0.3 < s < 0.6 for s in scores.values()), scores
    assert max(scores.values()) - min(scores.values()) <= 0.01, scores


def test_lucene_figure_is_reproduced(cacm, runs):
    """The data README measured Pyserini's BM25 (k1=0.9, b=0.4) at nDCG@10 0.4519."""
    _, qids, _, qrels = cacm
    for name in ("tantivy", "pyserini"):
        if name in BACKENDS:
            assert ndcg(dict(zip(qids, runs[name, 0.9, 0.4])), qrels, 10) == pytest.approx(
                0.4519, abs=0.001)


@pytest.mark.parametrize("k1,b", SETTINGS, ids=[f"k1={k1}-b={b}" for k1, b in SETTINGS])
def test_top10_lists_overlap(runs, k1, b):
    if "tantivy" in BACKENDS and "pyserini" in BACKENDS:
        # same analyzer as Lucene: the lists are the same
        assert overlap_at_k(runs["tantivy", k1, b], runs["pyserini", k1, b], 10) >= 0.95
    for x, y in itertools.combinations(BACKENDS, 2):
        # gensim's analyzer is rare's Python one (tokens and Porter variant differ a little)
        assert overlap_at_k(runs[x, k1, b], runs[y, k1, b], 10) >= 0.9, (x, y)


@pytest.mark.parametrize("name", BACKENDS, ids="backend={}".format)
def test_mining_semantics(name, anatomy_chunks):
    ids = [f"chunk{i}" for i in range(len(anatomy_chunks))]
    retriever = rare.retrievers.create(name)
    retriever.index(ids, anatomy_chunks)
    retriever.commit()
    queries = [chunk[3000:3400] for chunk in anatomy_chunks]
    result = retriever.mine(queries, ids, num_neg=3)
    for i, negs in enumerate(result):
        assert len(negs) == 3
        # neither the positive nor its overlapping neighbours
        assert {f"chunk{i - 1}", f"chunk{i}", f"chunk{i + 1}"}.isdisjoint(negs), (i, negs)
    # Ranks count every candidate, near-duplicates of the positive included (only those
    # taken are checked): start_rank=1 skips rank 0, whatever it is, and keeps the next two
    # that are not near-duplicates.
    later = retriever.mine(queries, ids, num_neg=2, start_rank=1)
    for i, negs in enumerate(later):
        ranked = [d for d, r in zip(result[i], result.ranks[i]) if r >= 1]
        assert list(negs) == ranked[:2] and all(r >= 1 for r in later.ranks[i]), i
    short = retriever.mine(queries[:1], ids[:1], num_neg=9)
    assert short.shortfall[0] > 0 and len(short[0]) == 9 - short.shortfall[0]
    if hasattr(retriever, "close"):
        retriever.close()
