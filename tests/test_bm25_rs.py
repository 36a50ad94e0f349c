"""The retriever "tantivy" (rare_bm25_rs): protocol, mining semantics, folders, threads, errors."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import rare.retrievers
from rare import NearDuplicateRule, Retriever, RetrieverError
from rare_bm25_rs import Bm25Error, TantivyError, TantivyRetriever


@pytest.fixture(scope="module")
def cacm_tantivy(cacm_docs) -> TantivyRetriever:
    retriever = rare.retrievers.create("tantivy")
    retriever.index([d["id"] for d in cacm_docs], [d["contents"] for d in cacm_docs])
    retriever.commit()
    return retriever


@pytest.fixture(scope="module")
def chunks_tantivy(anatomy_chunks) -> TantivyRetriever:
    retriever = TantivyRetriever()
    retriever.index([f"chunk{i}" for i in range(len(anatomy_chunks))], anatomy_chunks)
    retriever.commit()
    return retriever


def test_registered_by_entry_point() -> None:
    assert "tantivy" in rare.retrievers.names()
    retriever = rare.retrievers.create("tantivy", k1=0.9, b=0.4)
    assert isinstance(retriever, TantivyRetriever) and isinstance(retriever, Retriever)
    assert (retriever.k1, retriever.b, retriever.scorer) == (0.9, 0.4, "maxscore")
    assert rare.retrievers.create("tantivy").scorer == "maxscore"
    assert rare.retrievers.create("tantivy", scorer="tantivy").scorer == "tantivy"


def test_analyzers(tmp_path) -> None:
    assert TantivyRetriever().analyzer == "lucene"
    assert TantivyRetriever(analyzer="rare").analyzer == "rare"
    docs = (["a", "b"], ["The technology of U.S. assemblies", "Smith's 3.14 assembly lines"])
    for analyzer in ("lucene", "rare"):
        retriever = TantivyRetriever(analyzer=analyzer)
        retriever.index(*docs)
        assert [d for d, _ in retriever.search_batch(["technologies"], 5)[0]] == ["a"]
        assert {d for d, _ in retriever.search_batch(["assembly"], 5)[0]} == {"a", "b"}
    assert TantivyRetriever(analyzer="lucene").search_batch(["3.14"], 5) == [[]]
    with TantivyRetriever(path=tmp_path / "rare", analyzer="rare") as built:
        built.index(*docs)
    assert TantivyRetriever(path=tmp_path / "rare").analyzer == "rare"  # kept by the folder
    with pytest.raises(RetrieverError, match="built with analyzer 'rare', not 'lucene'") as exc:
        TantivyRetriever(path=tmp_path / "rare", analyzer="lucene")
    assert _kind(exc) == "incompatible_index"


def test_search_batch_shape(cacm_tantivy, cacm_docs) -> None:
    assert len(cacm_tantivy) == len(cacm_docs)
    hits = cacm_tantivy.search_batch(["parallel sorting", "the of and", ""], 7)
    assert len(hits) == 3 and len(hits[0]) == 7 and hits[1] == [] and hits[2] == []
    scores = [s for _, s in hits[0]]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)
    assert len(cacm_tantivy.search_batch(["computer"], 10_000_000)[0]) <= len(cacm_docs)
    ids = [d["id"] for d in cacm_docs[:3]]
    assert cacm_tantivy.get_texts([*ids, "no-such-id"]) == \
        [d["contents"] for d in cacm_docs[:3]] + [None]


def test_positive_is_never_returned(cacm_tantivy, cacm_docs) -> None:
    queries = [d["contents"][:200] for d in cacm_docs[:50]]
    positives = [d["id"] for d in cacm_docs[:50]]
    top1 = [hits[0][0] for hits in cacm_tantivy.search_batch(queries, 1)]
    # the query is the start of its own document
    assert sum(t == p for t, p in zip(top1, positives, strict=True)) >= 45
    result = cacm_tantivy.mine(queries, positives, num_neg=3)
    for pos, negs in zip(positives, result, strict=True):
        assert pos not in negs and len(negs) == 3
    assert result.shortfall == [0] * 50 and result.short_queries == []
    assert all(len(s) == 3 for s in result.scores)


MINE_CASES = [(3, 0, None), (5, 2, None), (2, 0, 6), (4, 10, 20)]


WINDOW_CASES = [{"start_rank": 5}, {"start_rank": 2, "end_rank": 14},
                {"start_rank": 3, "end_rank": 30, "sampling": "random", "seed": 4},
                {"end_rank": 12, "sampling": "random", "max_score_ratio": 0.9}]


@pytest.mark.parametrize("settings", WINDOW_CASES, ids=lambda c: ",".join(c))
def test_window_and_draws_check_near_duplicates_alike_in_rust_and_python(
        cacm_tantivy, cacm_docs, settings) -> None:
    """Only the candidates taken are checked for near-duplicates (a near-duplicate taken is
    replaced by the next candidate, or the next one drawn): the same negatives, ranks and
    skip counts in Rust and on the Python path, and no near-duplicate of the positive kept."""
    docs = cacm_docs[::25]
    queries = [d["contents"][:300] for d in docs]
    positives = [d["id"] for d in docs]
    text_of = {d["id"]: d["contents"] for d in cacm_docs}
    strict = NearDuplicateRule(ngram=2, min_shared=3)
    cacm_tantivy.near_duplicate = strict
    try:
        fast = cacm_tantivy.mine(queries, positives, 3, threads=2, **settings)
        slow = Retriever.mine(cacm_tantivy, queries, positives, 3, **settings)
    finally:
        cacm_tantivy.near_duplicate = NearDuplicateRule()
    assert list(fast) == list(slow) and fast.ranks == slow.ranks
    assert fast.skipped == slow.skipped and fast.skipped["near_duplicate"] > 0
    for pos, negatives in zip(positives, fast):
        assert not any(strict.is_near_duplicate(text_of[pos], text_of[d]) for d in negatives)


@pytest.mark.parametrize("num_neg,start_rank,depth", MINE_CASES,
                         ids=["num_neg={}-start={}-depth={}".format(*c) for c in MINE_CASES])
def test_mine_equals_the_python_default(cacm_tantivy, cacm_docs, num_neg, start_rank,
                                        depth) -> None:
    """Rust mining must give exactly what rare.Retriever.mine computes over search_batch."""
    docs = cacm_docs[::40]
    queries = [d["contents"][:300] for d in docs]
    positives = [d["id"] for d in docs]
    # A strict rule makes the near-duplicate branch fire on CACM's short abstracts too.
    for rule in (NearDuplicateRule(), NearDuplicateRule(ngram=2, min_shared=3), None):
        cacm_tantivy.near_duplicate = rule
        try:
            fast = cacm_tantivy.mine(queries, positives, num_neg, start_rank=start_rank,
                                     depth=depth, threads=2)
            slow = Retriever.mine(cacm_tantivy, queries, positives, num_neg,
                                  start_rank=start_rank, depth=depth)
        finally:
            cacm_tantivy.near_duplicate = NearDuplicateRule()
        assert list(fast) == list(slow)
        assert fast.shortfall == slow.shortfall
        for got, want in zip(fast.scores, slow.scores, strict=True):
            assert got == pytest.approx(want)


def test_mining_searches_deeper_past_many_near_duplicates() -> None:
    """Mining first asks for 2 * (start_rank + num_neg) + 4 hits; when all of them are the
    positive and its near-duplicates it must search again, to ``depth``."""
    base = " ".join(f"w{i}" for i in range(60))
    ids = [f"dup{i}" for i in range(15)] + [f"other{i}" for i in range(10)]
    texts = ([f"{base} tail{i}" for i in range(15)]
             + [f"w{i} w{i + 1} unrelated words number {i}" for i in range(10)])
    retriever = TantivyRetriever()
    retriever.index(ids, texts)
    got = retriever.mine([base], ["dup0"], num_neg=3, depth=50)
    want = Retriever.mine(retriever, [base], ["dup0"], 3, depth=50)
    assert list(got) == list(want) and got.shortfall == [0]
    assert all(doc.startswith("other") for doc in got[0])
    assert got.scores == want.scores


def test_start_rank_skips_top_candidates(cacm_tantivy) -> None:
    query, pos = ["parallel sorting algorithms on multiprocessors"], ["CACM-none"]
    plain = cacm_tantivy.mine(query, pos, num_neg=6)
    skipped = cacm_tantivy.mine(query, pos, num_neg=3, start_rank=3)
    assert skipped[0] == plain[0][3:6]
    assert skipped.scores[0] == plain.scores[0][3:6]


def test_short_corpus_reports_shortfall() -> None:
    retriever = rare.retrievers.create("tantivy")
    retriever.index(["a", "b", "c"], ["cats purr loudly", "dogs bark at cats", "fish swim"])
    result = retriever.mine(["cats", "fish", "zebra"], ["a", "c", "b"], num_neg=3)
    assert list(result) == [["b"], [], []]
    assert result.shortfall == [2, 3, 3] and result.short_queries == [0, 1, 2]
    result = retriever.mine(["cats"], ["a"], num_neg=1, start_rank=1)
    assert list(result) == [[]] and result.shortfall == [1]


def test_near_duplicate_of_positive_is_skipped(chunks_tantivy, anatomy_chunks) -> None:
    tail = anatomy_chunks[3][-900:]  # the overlap of chunk 3 and chunk 4
    chunks_tantivy.near_duplicate = None
    try:
        assert "chunk4" in chunks_tantivy.mine([tail], ["chunk3"], num_neg=3)[0]
    finally:
        chunks_tantivy.near_duplicate = NearDuplicateRule()
    negs = chunks_tantivy.mine([tail], ["chunk3"], num_neg=3)[0]
    assert "chunk3" not in negs and "chunk4" not in negs and "chunk2" not in negs
    assert len(negs) == 3
    # The positive's text may come from outside the index (mining an external corpus).
    external = chunks_tantivy.mine([tail], ["not-indexed"], num_neg=3,
                                   positive_texts=[anatomy_chunks[3]])[0]
    assert {"chunk2", "chunk3", "chunk4"}.isdisjoint(external) and len(external) == 3
    unfiltered = chunks_tantivy.mine([tail], ["not-indexed"], num_neg=3, positive_texts=[None])
    assert unfiltered[0][0] in {"chunk3", "chunk4"}


def test_reopen_saved_index(tmp_path, cacm_docs) -> None:
    folder = tmp_path / "idx"
    docs = cacm_docs[:500]
    queries = [d["contents"][:120] for d in docs[:20]]
    with TantivyRetriever(path=folder) as built:
        built.index([d["id"] for d in docs[:300]], [d["contents"] for d in docs[:300]])
        built.commit()
        built.index([d["id"] for d in docs[300:]], [d["contents"] for d in docs[300:]])
        before = built.search_batch(queries, 10)
    assert (folder / "meta.json").exists() and (folder / "rare_bm25_rs.json").exists()

    reopened = rare.retrievers.create("tantivy", path=str(folder))
    assert len(reopened) == 500 and reopened.path == str(folder)
    assert reopened.search_batch(queries, 10) == before
    assert reopened.get_texts([docs[7]["id"]]) == [docs[7]["contents"]]
    # A reopened index takes more documents, and refuses ids it already holds.
    reopened.index(["extra-1"], ["an extra document about compilers"])
    assert len(reopened) == 501
    with pytest.raises(RetrieverError, match="duplicate document id 'CACM-0001'|duplicate"):
        reopened.index([docs[0]["id"]], ["again"])
    reopened.close()
    assert len(TantivyRetriever(path=folder)) == 501


def test_concurrent_calls_from_python_threads(cacm_tantivy, cacm_docs) -> None:
    queries = [d["contents"][:150] for d in cacm_docs[:200]]
    positives = [d["id"] for d in cacm_docs[:200]]
    want_hits = cacm_tantivy.search_batch(queries, 20, threads=1)
    want_mined = list(cacm_tantivy.mine(queries, positives, 3, threads=1))

    def work(i: int) -> bool:
        if i % 3 == 0:
            return cacm_tantivy.search_batch(queries, 20, threads=2) == want_hits
        if i % 3 == 1:
            return list(cacm_tantivy.mine(queries, positives, 3, threads=2)) == want_mined
        return cacm_tantivy.get_texts(positives) == [d["contents"] for d in cacm_docs[:200]]

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(pool.map(work, range(18)))


def test_concurrent_indexing_and_search() -> None:
    retriever = TantivyRetriever()
    batches = [([f"d{b}-{i}" for i in range(200)],
                [f"batch {b} item {i} topic{i % 7}" for i in range(200)]) for b in range(8)]

    def add(batch: tuple[list[str], list[str]]) -> int:
        retriever.index(*batch)
        return len(retriever.search_batch(["topic3"], 5)[0])

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(n <= 5 for n in pool.map(add, batches))
    retriever.commit()
    assert len(retriever) == 1600


def _kind(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    err = excinfo.value
    assert isinstance(err, TantivyError) and isinstance(err, Bm25Error)
    assert isinstance(err, RetrieverError) and isinstance(err, ValueError)
    return err.kind  # type: ignore[attr-defined,no-any-return]


def test_bad_arguments(cacm_tantivy) -> None:
    cases = [
        (lambda: cacm_tantivy.search_batch(["a"], 0), "k must be >= 1"),
        (lambda: cacm_tantivy.search_batch(["a"], -3), "k must be >= 1"),
        (lambda: cacm_tantivy.search_batch(["a"], 5, threads=0), "threads must be >= 1"),
        (lambda: cacm_tantivy.search_batch("a query", 5), "sequence of str, not a single str"),
        (lambda: cacm_tantivy.mine(["a", "b"], ["x"], num_neg=3), "2 queries but 1 positive"),
        (lambda: cacm_tantivy.mine(["a"], ["x"], num_neg=0), "num_neg must be >= 1"),
        (lambda: cacm_tantivy.mine(["a"], ["x"], 3, start_rank=-1), "start_rank must be >= 0"),
        (lambda: cacm_tantivy.mine(["a"], ["x"], 3, depth=-5), "depth must be >= 1"),
        (lambda: cacm_tantivy.mine(["a"], ["x"], 3, positive_texts=[]), "0 positive texts"),
        (lambda: cacm_tantivy.index(["a", "b"], ["only one"]), "2 ids but 1 texts"),
        (lambda: TantivyRetriever(b=1.5), "k1 >= 0 and 0 <= b <= 1"),
        (lambda: TantivyRetriever(k1=-1), "k1 >= 0 and 0 <= b <= 1"),
        (lambda: TantivyRetriever(scorer="bm42"), "scorer must be"),
        (lambda: TantivyRetriever(k1=0.9, scorer="tantivy"), "only supports k1=1.2"),
        (lambda: TantivyRetriever(analyzer="klingon"), "unknown analyzer 'klingon'.*cjk"),
    ]
    for call, message in cases:
        with pytest.raises(RetrieverError, match=message) as excinfo:
            call()
        assert _kind(excinfo) == "invalid_argument", message
    with pytest.raises(RetrieverError, match="duplicate document id 'x'") as excinfo:
        TantivyRetriever().index(["x", "y", "x"], ["1", "2", "3"])
    assert _kind(excinfo) == "invalid_argument"
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        TantivyRetriever(colour="red")  # type: ignore[call-arg]
    closed = TantivyRetriever()
    closed.close()
    with pytest.raises(RetrieverError, match="tantivy retriever is closed") as excinfo:
        closed.search_batch(["a"], 5)
    assert _kind(excinfo) == "closed"
    with pytest.raises(TypeError):
        cacm_tantivy.search_batch([1, 2], 5)
    # The native module raises its own class, a ValueError, with the same message and kind.
    from rare_bm25_rs import _native

    with pytest.raises(Bm25Error, match="k must be >= 1") as excinfo:
        _native.Bm25Index().search_batch(["a"], 0)
    assert excinfo.value.kind == "invalid_argument"  # type: ignore[attr-defined]


def test_bad_paths_and_foreign_indexes(tmp_path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(RetrieverError, match="not a folder") as excinfo:
        TantivyRetriever(path=a_file)
    assert _kind(excinfo) == "bad_path"
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    (crowded / "notes.txt").write_text("mine")
    with pytest.raises(RetrieverError, match="not empty") as excinfo:
        TantivyRetriever(path=crowded)
    assert _kind(excinfo) == "bad_path"

    good = tmp_path / "good"
    with TantivyRetriever(path=good) as built:
        built.index(["a"], ["apples and pears"])
    marker = good / "rare_bm25_rs.json"
    original = marker.read_text()
    # An index of another format version of ours.
    marker.write_text(json.dumps({**json.loads(original), "version": 999}))
    with pytest.raises(RetrieverError, match="cannot use") as excinfo:
        TantivyRetriever(path=good)
    assert _kind(excinfo) == "incompatible_index"
    # A tantivy index some other tool wrote (no marker of ours).
    marker.unlink()
    with pytest.raises(RetrieverError, match="missing") as excinfo:
        TantivyRetriever(path=good)
    assert _kind(excinfo) == "incompatible_index"
    # An index written by another tantivy version: each segment file's footer says which.
    marker.write_text(original)
    for segment_file in good.glob("*.*"):
        data = segment_file.read_bytes()
        segment_file.write_bytes(re.sub(rb'("index_format_version":)(\d+)',
                                        lambda m: m.group(1) + b"9" * len(m.group(2)), data))
    with pytest.raises(RetrieverError, match="incompatible tantivy version") as excinfo:
        TantivyRetriever(path=good)
    assert _kind(excinfo) == "incompatible_index"
