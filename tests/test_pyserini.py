"""The `pyserini` retriever (rare-pyserini): Lucene BM25 through Anserini, driven over pyjnius."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

pytest.importorskip("rare_pyserini", reason="rare-pyserini is not installed")

import ir_metrics  # noqa: E402
from rare_pyserini import PyseriniRetriever  # noqa: E402

import rare.retrievers  # noqa: E402
from rare import NearDuplicateRule, RetrieverError  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
README = Path(__file__).resolve().parents[1] / "plugins" / "rare-pyserini" / "README.md"

# Short documents whose Lucene tokens are known (no stop words; Porter stems shown), so BM25
# can be computed by hand. Lengths stay small, where Lucene's norms store them exactly.
TOY = {
    "d1": ("apple banana apple cherry", ["appl", "banana", "appl", "cherri"]),
    "d2": ("banana cherry date elderberry fig grape",
           ["banana", "cherri", "date", "elderberri", "fig", "grape"]),
    "d3": ("apple apple apple", ["appl", "appl", "appl"]),
    "d4": ("kiwi lemon mango", ["kiwi", "lemon", "mango"]),
}


def lucene_bm25(query_terms: list[str], k1: float, b: float) -> dict[str, float]:
    """Lucene's BM25 (>= 8, without the constant k1 + 1 factor), computed by hand on TOY."""
    docs = {doc_id: tokens for doc_id, (_, tokens) in TOY.items()}
    avgdl = sum(len(t) for t in docs.values()) / len(docs)
    scores: dict[str, float] = {}
    for term in query_terms:
        df = sum(term in tokens for tokens in docs.values())
        if not df:
            continue
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for doc_id, tokens in docs.items():
            tf = tokens.count(term)
            if tf:
                norm = k1 * (1 - b + b * len(tokens) / avgdl)
                scores[doc_id] = scores.get(doc_id, 0.0) + idf * tf / (tf + norm)
    return scores


@pytest.fixture
def toy(tmp_path: Path):
    r = PyseriniRetriever(path=tmp_path / "toy")
    r.index(list(TOY), [text for text, _ in TOY.values()])
    r.commit()
    yield r
    r.close()


def test_registered_as_pyserini() -> None:
    assert "pyserini" in rare.retrievers.names()
    r = rare.retrievers.create("pyserini")
    assert isinstance(r, PyseriniRetriever)
    with r:
        assert (r.k1, r.b) == (1.2, 0.75)
        assert rare.retrievers.pyserini is PyseriniRetriever


def test_build_from_rows_and_search(toy: PyseriniRetriever) -> None:
    assert len(toy) == 4
    hits = toy.search_batch(["apple", "cherry banana", "kiwi", "zebra", "the of and", ""], k=10)
    assert [d for d, _ in hits[0]] == ["d3", "d1"]
    assert {d for d, _ in hits[1]} == {"d1", "d2"}
    assert [d for d, _ in hits[2]] == ["d4"]
    assert hits[3] == hits[4] == hits[5] == []
    for query_hits in hits:
        scores = [s for _, s in query_hits]
        assert scores == sorted(scores, reverse=True)
    assert toy.get_texts(["d2", "nope", "d4"]) == [TOY["d2"][0], None, TOY["d4"][0]]
    # k caps the hit list; one thread and two give the same answer
    assert toy.search_batch(["apple banana cherry"], k=2)[0] == \
        toy.search_batch(["apple banana cherry"], k=10)[0][:2]
    queries = ["apple", "banana", "cherry date", "fig", "mango apple"] * 5
    assert toy.search_batch(queries, 3, threads=1) == toy.search_batch(queries, 3, threads=2)


def test_scores_are_lucene_bm25_and_k1_b_are_settable(tmp_path: Path) -> None:
    query, terms = "apple cherry", ["appl", "cherri"]
    got = {}
    for k1, b in [(1.2, 0.75), (0.9, 0.4), (2.0, 0.0), (0.5, 1.0)]:
        r = PyseriniRetriever(path=tmp_path / "idx", k1=k1, b=b)
        if not len(r):
            r.index(list(TOY), [text for text, _ in TOY.values()])
            r.commit()
        got[(k1, b)] = dict(r.search_batch([query], k=10)[0])
        r.close()
        want = lucene_bm25(terms, k1, b)
        assert got[(k1, b)].keys() == want.keys()
        for doc_id, score in want.items():
            assert got[(k1, b)][doc_id] == pytest.approx(score, rel=1e-5)
    assert got[(1.2, 0.75)] != got[(0.9, 0.4)]
    # changing the attributes of an open retriever takes effect at the next search
    r = PyseriniRetriever(path=tmp_path / "idx")
    r.k1, r.b = 0.9, 0.4
    assert dict(r.search_batch([query], k=10)[0]) == got[(0.9, 0.4)]
    r.close()
    with pytest.raises(RetrieverError):
        PyseriniRetriever(k1=-1)
    with pytest.raises(RetrieverError):
        PyseriniRetriever(b=1.5)


def test_ties_break_by_id(tmp_path: Path) -> None:
    with PyseriniRetriever(path=tmp_path / "ties") as r:
        ids = ["c", "a", "e", "b", "d"]
        r.index(ids, ["same words here"] * 5)
        hits = r.search_batch(["words"], k=3)[0]
        assert [d for d, _ in hits] == ["a", "b", "c"]
        assert len({s for _, s in hits}) == 1


def test_open_existing_index_and_append(tmp_path: Path, cacm_docs) -> None:
    path = tmp_path / "cacm"
    docs = cacm_docs[:500]
    first = PyseriniRetriever(path=path)
    for start in range(0, len(docs), 200):  # index() in batches
        batch = docs[start:start + 200]
        first.index([d["id"] for d in batch], [d["contents"] for d in batch])
    assert len(first) == 0  # nothing searchable before commit
    first.commit()
    queries = ["computer programming languages", "matrix inversion algorithm"]
    before = first.search_batch(queries, k=20)
    first.close()
    assert path.is_dir()  # a given path is kept

    again = PyseriniRetriever(path=path)
    assert len(again) == 500
    assert again.search_batch(queries, k=20) == before
    assert again.get_texts([docs[7]["id"]]) == [docs[7]["contents"]]
    with pytest.raises(RetrieverError, match="already in the index"):
        again.index([docs[0]["id"]], ["a repeated id"])
    more = cacm_docs[500:600]
    again.index([d["id"] for d in more], [d["contents"] for d in more])
    hits = again.search_batch([more[3]["contents"]], k=1)  # commits pending documents
    assert len(again) == 600
    assert hits[0][0][0] == more[3]["id"]
    by_id = {d["id"]: d["contents"] for d in cacm_docs[:600]}
    seen = [d for query_hits in before for d, _ in query_hits]
    assert again.get_texts(seen) == [by_id[d] for d in seen]
    again.close()


def test_opens_an_index_built_by_anserini(tmp_path: Path, cacm_docs) -> None:
    """Pyserini's usual build (`-storeRaw`, positions, doc vectors, no stored contents)."""
    from rare_pyserini import _jvm

    collection = tmp_path / "collection"
    collection.mkdir()
    with open(collection / "docs.jsonl", "w", encoding="utf-8") as fh:
        for doc in cacm_docs[:300]:
            fh.write(json.dumps({"id": doc["id"], "contents": doc["contents"]}) + "\n")
    java = _jvm.classes()
    args = java.IndexCollectionArgs()
    args.collectionClass, args.input, args.index = "JsonCollection", str(collection), \
        str(tmp_path / "anserini")
    args.threads, args.quiet = 1, True
    args.storeRaw = args.storePositions = args.storeDocvectors = args.optimize = True
    java.IndexCollection(args).run()

    with PyseriniRetriever(path=tmp_path / "anserini") as r:
        assert len(r) == 300
        assert r.get_texts([cacm_docs[5]["id"]]) == [cacm_docs[5]["contents"]]
        top = r.search_batch([cacm_docs[5]["contents"]], k=5)[0]
        assert top[0][0] == cacm_docs[5]["id"]
        # appending matches the index's field options (positions, term vectors)
        r.index(["new-1", "new-2", "new-blank"],
                ["zeppelin airships over the arctic", "submarine cables", ""])
        r.commit()
        assert len(r) == 303
        assert r.search_batch(["zeppelin"], k=3)[0][0][0] == "new-1"
        assert r.get_texts(["new-2", cacm_docs[0]["id"]]) == \
            ["submarine cables", cacm_docs[0]["contents"]]


def test_index_without_id_doc_values(tmp_path: Path) -> None:
    """An index whose ids are stored only (no doc values) is searched through stored fields."""
    from rare_pyserini import _jvm

    java = _jvm.classes()
    text_field = java._autoclass("org.apache.lucene.document.TextField")
    config = java.IndexWriterConfig(java.EnglishAnalyzer())
    writer = java.IndexWriter(java.FSDirectory.open(java.Paths.get(str(tmp_path / "plain"))),
                              config)
    for doc_id, (text, _) in TOY.items():
        doc = java.Document()
        doc.add(java.StringField("id", doc_id, java.FieldStore.YES))
        doc.add(text_field("contents", text, java.FieldStore.YES))
        writer.addDocument(doc)
    writer.close()
    with PyseriniRetriever(path=tmp_path / "plain") as r:
        assert r._rescorer is None
        hits = r.search_batch(["apple cherry"], k=10)[0]
        want = lucene_bm25(["appl", "cherri"], 1.2, 0.75)
        assert [d for d, _ in hits] == sorted(want, key=lambda d: -want[d])
        assert r.get_texts(["d4"]) == [TOY["d4"][0]]


def test_rows_edge_cases(tmp_path: Path) -> None:
    with PyseriniRetriever(path=tmp_path / "edge") as r:
        with pytest.raises(RetrieverError, match="2 ids but 1 texts"):
            r.index(["a", "b"], ["x"])
        with pytest.raises(RetrieverError, match="duplicate"):
            r.index(["a", "a"], ["x", "y"])
        with pytest.raises(RetrieverError, match="must be str"):
            r.index(["a"], [None])  # type: ignore[list-item]
        r.index(["blank", "ctrl", "文档-1", "emoji"],
                ["   ", "\x00\x01 ", "Grüße aus Köln, 東京", "rocket 🚀 launch"])
        with pytest.raises(RetrieverError, match="duplicate"):
            r.index(["emoji"], ["again"])
        r.commit()
        assert len(r) == 4  # blank documents count, though no query can find them
        assert r.get_texts(["blank", "文档-1", "emoji"]) == \
            ["   ", "Grüße aus Köln, 東京", "rocket 🚀 launch"]
        assert r.search_batch(["köln"], k=5)[0][0][0] == "文档-1"
        assert r.search_batch(["launch"], k=5)[0][0][0] == "emoji"
        assert r.search_batch([], k=5) == []
        with pytest.raises(RetrieverError):
            r.search_batch(["x"], k=0)
        with pytest.raises(RetrieverError):
            r.search_batch(["x"], k=1, threads=0)
        with pytest.raises(RetrieverError, match="must be str"):
            r.search_batch(["ok", 3], k=1, threads=2)  # type: ignore[list-item]
    with pytest.raises(RetrieverError, match="neither a Lucene index nor empty"):
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "notes.txt").write_text("hello")
        PyseriniRetriever(path=tmp_path / "junk")


def test_temporary_index_is_removed_on_close() -> None:
    r = PyseriniRetriever()
    r.index(["a"], ["some text"])
    r.commit()
    path = r.path
    assert path.is_dir()
    r.close()
    assert not path.exists()
    with pytest.raises(RetrieverError, match="closed"):
        r.search_batch(["text"], k=1)


def test_long_query_beyond_lucenes_default_clause_limit() -> None:
    words = [f"w{i}x" for i in range(3000)]  # 3,000 distinct terms: Lucene's default is 1,024
    with PyseriniRetriever() as r:
        r.index(["a", "b"], [" ".join(words[:1000]), " ".join(words[2500:])])
        assert [d for d, _ in r.search_batch([" ".join(words)], k=5)[0]] == ["a", "b"]


def test_mining_skips_positive_and_near_duplicates(tmp_path: Path, anatomy_chunks) -> None:
    ids = [f"chunk{i}" for i in range(len(anatomy_chunks))]
    rule = NearDuplicateRule()
    with PyseriniRetriever(path=tmp_path / "anatomy", near_duplicate=rule) as r:
        r.index(ids, anatomy_chunks)
        # A sentence from the overlap of chunks 3 and 4: both rank at the top.
        query = ("Synchondroses occur where two ossification centers in a developing bone remain "
                 "separated by a layer of cartilage")
        top = [d for d, _ in r.search_batch([query], k=10)[0]]
        assert set(top[:2]) == {"chunk3", "chunk4"}
        mined = r.mine([query], ["chunk3"], num_neg=3)
        negatives = mined[0]
        assert len(negatives) == 3 and mined.shortfall == [0]
        assert "chunk3" not in negatives
        for neg in negatives:  # chunk2 and chunk4 repeat a passage of chunk3
            assert not rule.is_near_duplicate(anatomy_chunks[3], anatomy_chunks[ids.index(neg)])
        assert {"chunk2", "chunk4"}.isdisjoint(negatives)
        assert negatives == [d for d in top if d not in {"chunk2", "chunk3", "chunk4"}][:3]
        assert mined.scores[0] == sorted(mined.scores[0], reverse=True)
        # without the rule only the positive itself is dropped
        r.near_duplicate = None
        assert r.mine([query], ["chunk3"], num_neg=3)[0][0] == "chunk4"
        # too small a corpus: the shortfall is reported
        r.near_duplicate = rule
        short = r.mine([query], ["chunk3"], num_neg=9)
        assert short.shortfall == [9 - len(short[0])] and short.short_queries == [0]


def test_mining_a_mixed_corpus(tmp_path: Path, cacm_docs, anatomy_chunks) -> None:
    """The near-duplicate rule skips overlapping chunks among unrelated documents."""
    ids = [d["id"] for d in cacm_docs] + [f"chunk{i}" for i in range(len(anatomy_chunks))]
    texts = [d["contents"] for d in cacm_docs] + anatomy_chunks
    topics = ir_metrics.read_topics(DATA / "cacm" / "topics.cacm.txt")
    qrels = ir_metrics.read_qrels(DATA / "cacm" / "qrels.cacm.txt")
    queries = [topics[q] for q in sorted(qrels, key=int)]
    positives = [min(qrels[q]) for q in sorted(qrels, key=int)]
    queries += [chunk[-400:] for chunk in anatomy_chunks]  # neighbours are near-duplicates
    positives += [f"chunk{i}" for i in range(len(anatomy_chunks))]
    with PyseriniRetriever(path=tmp_path / "mix",
                           near_duplicate=NearDuplicateRule(ngram=3, min_shared=4)) as r:
        r.index(ids, texts)
        with_rule = r.mine(queries, positives, 3)
        for i, negs in enumerate(with_rule[-len(anatomy_chunks):]):
            assert {f"chunk{i - 1}", f"chunk{i}", f"chunk{i + 1}"}.isdisjoint(negs)
        r.near_duplicate = None
        without = r.mine(queries, positives, 3)
        skipped = sum(a != b for a, b in zip(with_rule, without, strict=True))
        assert skipped >= 10  # the rule did skip candidates, so the cases above tested it
        with pytest.raises(RetrieverError):
            r.mine(queries, positives[:-1], 3)
        with pytest.raises(RetrieverError):
            r.mine(queries, positives, 3, positive_texts=["x"])


def test_cacm_effectiveness_matches_pyserini(tmp_path: Path) -> None:
    """Lucene BM25 at Pyserini's k1=0.9, b=0.4 on CACM: nDCG@10 as measured (data README)."""
    docs = [json.loads(line) for line in
            (DATA / "cacm" / "cacm.jsonl").read_text(encoding="utf-8").splitlines()]
    topics = ir_metrics.read_topics(DATA / "cacm" / "topics.cacm.txt")
    qrels = ir_metrics.read_qrels(DATA / "cacm" / "qrels.cacm.txt")
    assert len(docs) == 3204 and len(topics) == 64 and len(qrels) == 52
    with PyseriniRetriever(path=tmp_path / "cacm", k1=0.9, b=0.4) as r:
        t = time.perf_counter()
        r.index([d["id"] for d in docs], [d["contents"] for d in docs])
        r.commit()
        qids = sorted(topics, key=int)
        hits = r.search_batch([topics[q] for q in qids], k=100)
        elapsed = time.perf_counter() - t
    run = {qid: [d for d, _ in h] for qid, h in zip(qids, hits, strict=True)}
    ndcg10 = ir_metrics.ndcg(run, qrels, k=10)
    print(f"CACM: nDCG@10 {ndcg10:.4f}, recall@100 {ir_metrics.recall(run, qrels, 100):.4f}, "
          f"MRR {ir_metrics.mrr(run, qrels):.4f}, index+search {elapsed:.1f} s")
    assert ndcg10 == pytest.approx(0.4519, abs=0.01)


def test_readme_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
