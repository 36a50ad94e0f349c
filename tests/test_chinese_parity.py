"""Chinese retrieval in every backend: the same tokens, the same rankings, the README's
figures, on the three sets of ../shared/data/zh (stard, cmrc2018, csl).

At equal k1/b, the Rust backend's ``cjk`` analyzer and Pyserini's ``zh`` (Lucene's
CJKAnalyzer) must agree (top-10 overlap >= 0.95, nDCG@10 within 0.01), and gensim (the
Python ``cjk`` analyzer) must be within 0.02.
"""

from __future__ import annotations

import pytest
from zh_data import SETS, load

import rare.retrievers
from rare.evaluation import ndcg, overlap_at_k

K1, B = 0.9, 0.4  # the README's reference figures use Pyserini's defaults
BACKENDS = [name for name in ("tantivy", "pyserini", "gensim") if name in rare.retrievers.names()]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], list[list[str]]]:
    """Top-100 ids per (backend, set), each index built once."""
    out = {}
    for name in SETS:
        data = load(name)
        for backend in BACKENDS:
            with rare.retrievers.create(backend, k1=K1, b=B, language="zh") as retriever:
                retriever.index(data.ids, data.texts)
                retriever.commit()
                hits = retriever.search_batch(data.queries, 100, threads=2)
            out[backend, name] = [[doc_id for doc_id, _ in h] for h in hits]
    return out


def score(runs: dict, backend: str, name: str) -> float:
    data = load(name)
    return ndcg(dict(zip(data.qids, runs[backend, name], strict=True)), data.qrels, 10)


@pytest.mark.parametrize("name", SETS)
def test_rust_cjk_matches_lucene_cjk(runs, name: str) -> None:
    if "pyserini" not in BACKENDS:
        pytest.skip("rare-pyserini is not installed")
    overlap = overlap_at_k(runs["tantivy", name], runs["pyserini", name], 10)
    assert overlap >= 0.95, overlap
    assert abs(score(runs, "tantivy", name) - score(runs, "pyserini", name)) <= 0.01


@pytest.mark.parametrize("name", SETS)
def test_gensim_within_two_points(runs, name: str) -> None:
    assert abs(score(runs, "gensim", name) - score(runs, "tantivy", name)) <= 0.02
    # gensim's analyzer is the Rust one token for token: the lists are the same
    assert overlap_at_k(runs["gensim", name], runs["tantivy", name], 10) >= 0.95


def test_reference_figures(runs) -> None:
    """The data README: plain CJK bigrams, k1=0.9 b=0.4: stard .471, cmrc2018 .981, csl .979."""
    figures = {name: score(runs, "tantivy", name) for name in SETS}
    assert figures["stard"] >= 0.46, figures
    assert figures["cmrc2018"] == pytest.approx(0.981, abs=0.01), figures
    assert figures["csl"] == pytest.approx(0.979, abs=0.01), figures


def test_jieba_backends_agree() -> None:
    """jieba in Rust (jieba-rs) and in Python (jieba) rank alike."""
    data = load("stard")
    ranked = {}
    for backend in ("tantivy", "gensim"):
        with rare.retrievers.create(backend, k1=K1, b=B, language="zh",
                                    analyzer="jieba") as retriever:
            retriever.index(data.ids, data.texts)
            hits = retriever.search_batch(data.queries, 10)
        ranked[backend] = [[doc_id for doc_id, _ in h] for h in hits]
    assert overlap_at_k(ranked["tantivy"], ranked["gensim"], 10) >= 0.98
    figure = ndcg(dict(zip(data.qids, ranked["tantivy"], strict=True)), data.qrels, 10)
    assert figure == pytest.approx(0.442, abs=0.015)  # the README's jieba figure


def test_rust_cjk_gives_lucenes_tokens() -> None:
    """Token for token against Lucene's own CJKAnalyzer, on every document and query of the
    three sets (12,313 texts)."""
    pytest.importorskip("rare_pyserini")
    from rare_pyserini import _jvm

    from rare_bm25_rs import analyze

    java = _jvm.classes()
    utils = java._autoclass("io.anserini.analysis.AnalyzerUtils")
    analyzer = java.cjk_analyzer
    texts = [t for name in SETS for t in load(name).texts + load(name).queries]
    texts += ["ＡＢＣ ｶﾞｷﾞ 〇々〆 中ー文 ゝ中 a★b 中®文 ___ _a wr\u200biters the an www s t"]
    differing = []
    for text in texts:
        lucene = [str(token) for token in utils.analyze(analyzer, text).toArray()]
        if lucene != analyze(text, "cjk"):
            differing.append(text)
    assert differing == []


def test_pyserini_saved_index_remembers_its_language(tmp_path) -> None:
    if "pyserini" not in BACKENDS:
        pytest.skip("rare-pyserini is not installed")
    from rare import RetrieverError

    data = load("csl")
    with rare.retrievers.create("pyserini", language="zh", path=tmp_path / "idx") as retriever:
        retriever.index(data.ids[:40], data.texts[:40])
        retriever.commit()
    with pytest.raises(RetrieverError, match="built for language 'zh'"):
        rare.retrievers.create("pyserini", path=tmp_path / "idx")
    kept = set(data.ids[:40])
    qid, relevant = next((q, d) for q in data.qids for d in data.qrels.get(q, {}) if d in kept)
    query = data.queries[data.qids.index(qid)]
    with rare.retrievers.create("pyserini", path=tmp_path / "idx", language="auto") as again:
        assert again.language == "zh" and len(again) == 40
        hits = again.search_batch([query], 5)
    assert hits[0][0][0] == relevant
