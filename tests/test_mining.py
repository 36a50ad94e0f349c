"""Mining semantics and the near-duplicate rule, on the reference path (gensim)."""

from __future__ import annotations

import json

import pytest

import rare.retrievers
from rare import FileStorage, NearDuplicateRule, RetrieverError
from rare.text import EnglishAnalyzer, tokenize


def test_analyzer_is_lucene_like() -> None:
    analyzer = EnglishAnalyzer()
    assert analyzer("The Running of the Bulls, in 2024!") == ["run", "bull", "2024"]
    assert tokenize("snake_case and CamelCase") == ["snake", "case", "and", "camelcase"]
    # possessives go, as in Lucene's EnglishPossessiveFilter; no token is ever empty
    assert analyzer("Smith's house, the cats\u2019 s toys") == ["smith", "hous", "cat", "toi"]


def test_neighbouring_chunks_are_near_duplicates(anatomy_chunks: list[str]) -> None:
    rule = NearDuplicateRule()
    for i in range(len(anatomy_chunks) - 1):
        assert rule.is_near_duplicate(anatomy_chunks[i], anatomy_chunks[i + 1]), i
    for i in range(len(anatomy_chunks) - 2):
        assert not rule.is_near_duplicate(anatomy_chunks[i], anatomy_chunks[i + 2]), i


def test_near_duplicate_thresholds_are_settable() -> None:
    base = " ".join(f"w{i}" for i in range(100))
    half = " ".join(f"w{i}" for i in range(70, 130))  # shares 30 words: 23 8-grams
    assert not NearDuplicateRule().is_near_duplicate(base, half)
    assert NearDuplicateRule(min_shared=20).is_near_duplicate(base, half)
    assert NearDuplicateRule().is_near_duplicate("a short text", "A short, TEXT.")
    assert not NearDuplicateRule().is_near_duplicate("", "")
    with pytest.raises(ValueError, match="near-duplicate rule"):
        NearDuplicateRule(min_fraction=0)


@pytest.fixture(scope="module")
def cacm_gensim(cacm_docs):
    retriever = rare.retrievers.create("gensim")
    retriever.index([d["id"] for d in cacm_docs], [d["contents"] for d in cacm_docs])
    retriever.commit()
    return retriever


def test_positive_is_never_returned(cacm_gensim, cacm_docs) -> None:
    queries = [d["contents"][:200] for d in cacm_docs[:50]]
    positives = [d["id"] for d in cacm_docs[:50]]
    top1 = [hits[0][0] for hits in cacm_gensim.search_batch(queries, 1)]
    assert sum(t == p for t, p in zip(top1, positives)) >= 45  # the query is its own doc
    result = cacm_gensim.mine(queries, positives, num_neg=3)
    for pos, negs in zip(positives, result):
        assert pos not in negs and len(negs) == 3
    assert result.shortfall == [0] * 50


def test_start_rank_skips_top_candidates(cacm_gensim) -> None:
    query, pos = ["parallel sorting algorithms on multiprocessors"], ["CACM-none"]
    plain = cacm_gensim.mine(query, pos, num_neg=6)
    skipped = cacm_gensim.mine(query, pos, num_neg=3, start_rank=3)
    assert skipped[0] == plain[0][3:6]


def test_short_corpus_reports_shortfall() -> None:
    retriever = rare.retrievers.create("gensim")
    retriever.index(["a", "b", "c"], ["cats purr loudly", "dogs bark at cats", "fish swim"])
    result = retriever.mine(["cats"], ["a"], num_neg=3)
    assert result[0] == ["b"]
    assert result.shortfall == [2] and result.short_queries == [0]


def test_near_duplicate_of_positive_is_skipped(anatomy_chunks) -> None:
    retriever = rare.retrievers.create("gensim")
    ids = [f"chunk{i}" for i in range(len(anatomy_chunks))]
    retriever.index(ids, anatomy_chunks)
    # A query made of the overlap between chunk 3 and chunk 4 ranks chunk 4 highly.
    tail = anatomy_chunks[3][-900:]
    unfiltered = rare.retrievers.create("gensim", near_duplicate=None)
    unfiltered.index(ids, anatomy_chunks)
    assert "chunk4" in unfiltered.mine([tail], ["chunk3"], num_neg=3)[0]
    negs = retriever.mine([tail], ["chunk3"], num_neg=3)[0]
    assert "chunk3" not in negs and "chunk4" not in negs and "chunk2" not in negs
    assert len(negs) == 3


def test_bad_arguments(cacm_gensim, cacm_docs) -> None:
    with pytest.raises(RetrieverError, match="2 queries but 1 positive ids"):
        cacm_gensim.mine(["a", "b"], ["x"], num_neg=3)
    with pytest.raises(RetrieverError, match="num_neg must be >= 1"):
        cacm_gensim.mine(["a"], ["x"], num_neg=0)
    with pytest.raises(RetrieverError, match="k must be >= 1"):
        cacm_gensim.search_batch(["a"], 0)
    with pytest.raises(RetrieverError, match="k1 >= 0 and 0 <= b <= 1"):
        rare.retrievers.create("gensim", b=1.5)
    first = cacm_docs[0]["id"]
    with pytest.raises(RetrieverError, match=f"duplicate document id '{first}'"):
        cacm_gensim.index([first], ["again"])


def test_bm25hardneg_operator_on_example_chunks(tmp_path, anatomy_chunks) -> None:
    from rare.operators import BM25HardNeg

    rows = [{"text": t, "question": t[2000:2300]} for t in anatomy_chunks]
    rows[5]["question"] = None  # as if Doc2Query had failed on this row
    (tmp_path / "in.json").write_text(json.dumps(rows))
    storage = FileStorage(str(tmp_path / "in.json"), cache_path=str(tmp_path / "c"))
    op = BM25HardNeg(retriever="gensim", num_neg=3)
    op.run(storage.step())
    out = storage.step().read("dict")
    for i, row in enumerate(out):
        if i == 5:
            assert row["hard_negatives"] is None and "skipped" in row["hardneg_error"]
            continue
        assert len(row["hard_negatives"]) == 3 and row["hardneg_error"] is None
        assert row["text"] not in row["hard_negatives"]
        # neighbouring chunks repeat ~1,000 characters of the positive: never negatives
        assert {f"row{i - 1}", f"row{i}", f"row{i + 1}"}.isdisjoint(row["hard_negatives_ids"])
        assert [anatomy_chunks[int(d[3:])] for d in row["hard_negatives_ids"]] == \
            row["hard_negatives"]
    assert op.stats["failed"] == 1 and op.stats["retriever"] == "gensim"
