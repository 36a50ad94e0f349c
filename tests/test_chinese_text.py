"""Chinese text: the cjk and jieba analyzers (Python and Rust alike), the near-duplicate rule
on CJK text, the language setting (auto-detection, bad input, warnings)."""

from __future__ import annotations

import difflib
import json
import logging
import random
import unicodedata

import pytest
from conftest import shared
from zh_data import SETS, load

import rare.retrievers
from rare import NearDuplicateRule, SettingsError
from rare.text import (
    CJKAnalyzer,
    JiebaAnalyzer,
    check_language,
    cjk_share,
    detect_language,
    shingle_tokens,
)
from rare.text.cjk import fold_width_lower

native = pytest.importorskip("rare_bm25_rs._native")

# Text the three sets lack: width forms, kana (with half-width voiced marks), hangul,
# Traditional characters, numbers, English with stop words, code, Greek, combining marks.
ODD = [
    "ＡＢＣ　ｄｅｆ　１２３，ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ",
    "ｶﾞｷﾞｸﾞｹﾞｺﾞ ﾊﾟﾋﾟﾌﾟ ﾜﾞｦﾞ ﾞｱﾟ ﾝﾞ トウキョウ タワー ひらがな",
    "한국어 텍스트와 中文混合 and English words",
    "臺灣的國語與大陸的普通話使用繁體字和簡體字",
    "2018年12月31日，GDP增长6.5%，约1,000,000人；C++和Python 3.11 的 e.g. U.S.A. don't",
    "ΣΟΦΟΣ İstanbul café\u0301 naïve x²+y³ ①② snake_case __init__ a.b.c 3.14.15",
    "“引号”《书名》【括号】……——·〇々〆 ㄅㄆㄇ ⺀⿰ 𠀀𠀁𪚥 ㈱ ㍿",
    "", "   ", "。，、；：？！",
]


def corpus_sample(limit_per_set: int = 400) -> list[str]:
    texts = list(ODD)
    for name in SETS:
        data = load(name)
        texts += data.texts[:limit_per_set] + data.queries[:limit_per_set]
    return texts


# -- the analyzers --------------------------------------------------------------------------
def test_cjk_analyzer_tokens() -> None:
    cjk = CJKAnalyzer()
    assert cjk("中华人民共和国") == ["中华", "华人", "人民", "民共", "共和", "和国"]
    assert cjk("我，你 他们") == ["我", "你", "他们"]  # a lone character stays a unigram
    # mixed text keeps its English words (lowercased, CJK stop words out, not stemmed)
    assert cjk("使用Python的 The Running www 3.14") == ["使用", "python", "的", "running",
                                                       "3.14"]
    assert cjk("ＧＰＴ－４模型") == ["gpt", "4", "模型"]  # full-width folded
    assert fold_width_lower("ｶﾞｷﾞﾊﾟ") == "ガギパ"  # half-width katakana, voiced marks joined
    # Simplified and Traditional both work (each is Han; nothing is converted)
    assert cjk("臺灣") == ["臺灣"] and cjk("台湾") == ["台湾"]


def test_jieba_analyzer_tokens() -> None:
    jieba = JiebaAnalyzer()
    assert jieba("我来到北京清华大学，学习Rust和the Python。") == [
        "我", "来到", "北京", "清华大学", "学习", "rust", "和", "python"]


def test_rust_and_python_cjk_analyzers_agree() -> None:
    texts = corpus_sample()
    differing = [t for t in texts if native.analyze(t, "cjk") != CJKAnalyzer()(t)]
    assert differing == []


def test_cjk_analyzers_agree_on_every_bmp_character() -> None:
    """Each code point alone, and between two Han characters and two Latin letters.

    Code points that Python's Unicode database leaves unassigned are skipped: the Rust side
    knows a newer Unicode version.
    """
    cjk = CJKAnalyzer()
    texts = []
    for code in range(0x20, 0x10000):
        c = chr(code)
        if unicodedata.category(c) in ("Cn", "Cs"):
            continue
        texts.append(f"中{c}文 ab{c}cd 1{c}2 {c}{c}")
    rust = [native.analyze(t, "cjk") for t in texts]
    differing = [t for t, r in zip(texts, rust) if r != cjk(t)]
    assert differing == [], differing[:5]


def test_rust_and_python_jieba_segment_alike() -> None:
    """jieba-rs (Rust) and jieba (Python) cut the CJK runs of the three sets alike but for
    two texts of 12,313 (jieba-rs keeps 常在 and 可当 whole, jieba splits them): the tokens
    overlap 99.999%."""
    jieba = JiebaAnalyzer()
    texts = [t for name in SETS for t in load(name).texts + load(name).queries]
    same = shared_tokens = total = 0
    for text in texts:
        rust, python = native.analyze(text, "jieba"), jieba(text)
        same += rust == python
        shared_tokens += sum(min(rust.count(t), python.count(t)) for t in set(rust))
        total += max(len(rust), len(python))
    assert len(texts) - same <= 3, len(texts) - same
    assert shared_tokens / total >= 0.9999, shared_tokens / total


def test_shingle_tokens_and_share_agree() -> None:
    texts = corpus_sample()
    assert [t for t in texts if native.shingle_tokens(t) != shingle_tokens(t)] == []
    assert shingle_tokens("中文ab，中x Hello") == ["中", "文", "ab", "中", "x", "hello"]
    for name in SETS:
        data = load(name).texts[:300]
        assert native.cjk_share(data) == pytest.approx(cjk_share(data))


# -- the near-duplicate rule on Chinese ---------------------------------------------------
def chinese_chunks(seed: int = 7, count: int = 40) -> tuple[list[str], list[tuple[int, int]]]:
    """Chunks of 700-900 characters cut from cmrc2018 paragraphs run together, each
    overlapping the next by 100-300 characters; and the overlaps."""
    text = "".join(load("cmrc2018").texts[200:480])
    rng = random.Random(seed)
    chunks, overlaps = [], []
    start = 0
    for _ in range(count):
        length = rng.randint(700, 900)
        chunks.append(text[start:start + length])
        overlap = rng.randint(100, 300)
        overlaps.append((len(chunks) - 1, overlap))
        start += length - overlap
    return chunks, overlaps


def test_neighbouring_chinese_chunks_are_near_duplicates_in_rust_and_python() -> None:
    rule = NearDuplicateRule()
    chunks, _ = chinese_chunks()
    for a, b in zip(chunks, chunks[1:]):
        assert rule.is_near_duplicate(a, b)
        assert native.is_near_duplicate(a, b)
    # chunks two apart share nothing; different paragraphs of the other sets neither
    others = load("cmrc2018").texts[:150] + load("stard").texts[:150] + load("csl").texts[:150]
    pairs = [(chunks[i], chunks[i + 2]) for i in range(len(chunks) - 2)]
    pairs += list(zip(others, others[1:]))
    python = [rule.is_near_duplicate(a, b) for a, b in pairs]
    rust = [native.is_near_duplicate(a, b) for a, b in pairs]
    assert python == rust
    assert sum(python[:len(chunks) - 2]) == 0
    # Neighbouring paragraphs of a set share phrases, not passages: a pair is flagged only
    # when it does repeat one (a statute listed twice, one clause in two laws, two station
    # articles from one template).
    flagged = [pair for pair, same in zip(pairs, python) if same]
    assert len(flagged) <= 5, len(flagged)
    for a, b in flagged:
        match = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match()
        assert match.size >= 30, (a[:40], b[:40])


@pytest.mark.parametrize("backend", ["tantivy", "gensim"])
def test_overlapping_chinese_chunks_are_never_each_others_negatives(backend: str) -> None:
    chunks, _ = chinese_chunks()
    ids = [f"chunk{i}" for i in range(len(chunks))]
    # distractors from other paragraphs, so that there are negatives to find
    extra = load("cmrc2018").texts[600:800]
    extra_ids = [f"other{i}" for i in range(len(extra))]
    queries = [chunk[150:190] for chunk in chunks]  # a sentence-long piece of each chunk
    with rare.retrievers.create(backend, language="zh") as retriever:
        retriever.index(ids + extra_ids, chunks + extra)
        retriever.commit()
        mined = retriever.mine(queries, ids, num_neg=3, depth=30)
        # The base class's mining in Python, on the same search: the same decisions.
        python = rare.retrievers.Retriever.mine(retriever, queries, ids, num_neg=3, depth=30)
    assert [list(m) for m in mined] == [list(m) for m in python]
    for i, negatives in enumerate(mined):
        assert len(negatives) == 3
        assert {f"chunk{i - 1}", f"chunk{i}", f"chunk{i + 1}"}.isdisjoint(negatives), (i, negatives)


# -- the language setting -------------------------------------------------------------------
@pytest.mark.parametrize("name", SETS)
def test_auto_picks_zh_on_the_chinese_sets(name: str) -> None:
    data = load(name)
    assert detect_language(data.texts)[0] == "zh"
    with rare.retrievers.create("tantivy", language="auto") as retriever:
        retriever.index(data.ids[:500], data.texts[:500])
        assert (retriever.language, retriever.analyzer) == ("zh", "cjk")


def test_auto_picks_en_on_wiki205k(caplog: pytest.LogCaptureFixture) -> None:
    import gzip

    with gzip.open(shared("wiki205k", "corpus.jsonl.gz"), "rt", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(3000)]
    texts = [r["text"] for r in rows]
    language, share = detect_language(texts)
    assert language == "en" and share < 0.01
    caplog.set_level(logging.INFO, logger="rare")
    for backend in ("tantivy", "gensim"):
        with rare.retrievers.create(backend, language="auto") as retriever:
            retriever.index([r["_id"] for r in rows[:300]], texts[:300])
            assert retriever.language == "en"
    assert "language='auto' picked 'en'" in caplog.text


@pytest.mark.parametrize("backend", ["tantivy", "gensim", "pyserini"])
def test_unknown_language_or_analyzer_lists_the_known_ones(backend: str) -> None:
    if backend not in rare.retrievers.names():
        pytest.skip(f"{backend} is not installed")
    with pytest.raises((SettingsError, ValueError)) as err:
        rare.retrievers.create(backend, language="fr")
    assert "known languages: en" in str(err.value) and "zh" in str(err.value)
    with pytest.raises((SettingsError, ValueError)) as err:
        rare.retrievers.create(backend, language="zh", analyzer="mecab")
    assert "unknown analyzer 'mecab'" in str(err.value) and "cjk" in str(err.value)
    with pytest.raises((SettingsError, ValueError)) as err:
        rare.retrievers.create(backend, language="en", analyzer="cjk")
    assert "'cjk' is for language 'zh'" in str(err.value)
    with pytest.raises(SettingsError, match="known languages"):
        check_language("chinese")


@pytest.mark.parametrize("backend", ["tantivy", "gensim"])
def test_english_analyzer_on_chinese_warns(backend: str, caplog: pytest.LogCaptureFixture
                                           ) -> None:
    data = load("stard")
    with rare.retrievers.create(backend) as retriever, caplog.at_level(logging.WARNING):
        retriever.index(data.ids[:200], data.texts[:200])
    warning = caplog.text
    assert "% of the text is CJK" in warning and "language='zh'" in warning
    assert "--language zh" in warning


def test_a_saved_index_remembers_its_language(tmp_path) -> None:
    data = load("csl")
    with rare.retrievers.create("tantivy", language="zh", analyzer="jieba",
                                path=tmp_path / "idx") as retriever:
        retriever.index(data.ids[:50], data.texts[:50])
    marker = json.loads((tmp_path / "idx" / "rare_bm25_rs.json").read_text())
    assert (marker["language"], marker["analyzer"]) == ("zh", "rare_zh_jieba_v1")
    with pytest.raises(ValueError, match="built for language 'zh' .analyzer 'jieba'., not 'en'"):
        rare.retrievers.create("tantivy", path=tmp_path / "idx")
    with pytest.raises(ValueError, match="built with analyzer 'jieba', not 'cjk'"):
        rare.retrievers.create("tantivy", path=tmp_path / "idx", language="zh", analyzer="cjk")
    for language in ("zh", "auto"):
        with rare.retrievers.create("tantivy", path=tmp_path / "idx",
                                    language=language) as again:
            assert (again.language, again.analyzer, len(again)) == ("zh", "jieba", 50)


# -- the language setting through BM25HardNeg, the pipeline and the CLI ----------------------
def test_hardneg_language_through_the_pipeline(tmp_path, caplog: pytest.LogCaptureFixture
                                               ) -> None:
    from rare.pipeline import Pipeline, Step
    from rare.storage import read_records, write_records

    data = load("cmrc2018")
    rows = [{"text": t, "question": t[10:40]} for t in data.texts[:40]]
    write_records(tmp_path / "in.jsonl", rows)
    caplog.set_level(logging.INFO, logger="rare")
    report = Pipeline([Step("BM25HardNeg", run={"num_neg": 2})], language="auto").run(
        tmp_path / "in.jsonl", tmp_path / "out.jsonl", cache_path=tmp_path / "cache")
    assert report.stages[0].stats["language"] == "zh"
    assert "language='auto' picked 'zh'" in caplog.text
    out = read_records(tmp_path / "out.jsonl")
    assert all(r["text"] not in r["hard_negatives"] for r in out)
    assert sum(len(r["hard_negatives"]) == 2 for r in out) >= 35
    # [retriever] language = "zh" reaches the retriever too
    report = Pipeline([Step("BM25HardNeg", run={"num_neg": 2})],
                      retriever_options={"language": "zh"}).run(
        tmp_path / "in.jsonl", tmp_path / "out2.jsonl", cache_path=tmp_path / "cache2")
    assert report.stages[0].stats["language"] == "zh"


def test_bad_language_settings_name_the_known_ones(tmp_path) -> None:
    import subprocess
    import sys

    from rare_stages import BM25HardNeg, Doc2Query

    from rare.pipeline import Pipeline, Step

    with pytest.raises(SettingsError, match="unknown language 'fr'; known languages: en"):
        Pipeline([Step("BM25HardNeg")], language="fr")
    with pytest.raises(SettingsError, match="known languages"):
        BM25HardNeg(language="chinese")
    with pytest.raises(SettingsError, match="known languages"):
        Doc2Query(llm_serving=object(), language="jp")  # type: ignore[arg-type]
    with rare.retrievers.create("tantivy", language="en") as english:
        from rare_stages.hardneg import resolve_retriever

        with pytest.raises(SettingsError, match="is for 'en'; create it with language='zh'"):
            resolve_retriever(english, {}, "zh")
    config = tmp_path / "run.toml"
    config.write_text('[pipeline]\ninput = "in.jsonl"\noutput = "out.jsonl"\nlanguage = "xx"\n')
    proc = subprocess.run([sys.executable, "-m", "rare.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "unknown language 'xx'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rare_bench_in_chinese_reads_beir_and_records_the_analyzers() -> None:
    from rare.bench import BenchConfig, DataSpec, run_bench

    folder = shared("zh", "stard")
    spec = DataSpec(str(folder / "corpus.jsonl"), str(folder / "queries.jsonl"),
                    str(folder / "qrels" / "test.tsv"), max_queries=300)
    lines: list[str] = []
    report = run_bench(BenchConfig(spec, ["tantivy", "gensim"], threads=[1],
                                   references=["bm25s"], repeat=1, out=None, in_process=True,
                                   k1=0.9, b=0.4, language="zh"),
                       echo=lines.append, progress=lambda line: None)
    assert report["language"] == "zh"
    assert report["analyzers"] == {"tantivy": "cjk", "gensim": "cjk", "bm25s": "jieba"}
    assert report["num_docs"] == 1445 and report["num_judged_queries"] == 300
    assert report["top10_overlap"]["tantivy"]["gensim"] >= 0.95
    assert all(run["qps"]["mine"] > 0 for run in report["runs"])
    assert "language zh" in "\n".join(lines)
    # a backend without a Chinese analyzer is refused before anything runs
    with pytest.raises(SettingsError, match="'tantivy-py' has no analyzer for language 'zh'"):
        run_bench(BenchConfig(spec, ["tantivy"], references=["tantivy-py"], out=None,
                              language="zh"), echo=lines.append, progress=lambda line: None)


@pytest.mark.parametrize("backend", ["tantivy", "gensim", "pyserini"])
@pytest.mark.parametrize("analyzer", ["cjk", "jieba"])
def test_mixed_documents_keep_their_english_words_searchable(backend: str, analyzer: str
                                                             ) -> None:
    if backend not in rare.retrievers.names():
        pytest.skip(f"{backend} is not installed")
    if backend == "pyserini" and analyzer == "jieba":
        with pytest.raises(ValueError, match="unknown analyzer 'jieba'.*zh: cjk"):
            rare.retrievers.create(backend, language="zh", analyzer=analyzer)
        return
    docs = {
        "a": "我们用PyTorch训练Transformer模型，attention机制的复杂度是O(n²)。",
        "b": "北京是中国的首都，人口约2,189万，面积16,410平方公里。",
        "c": "Rust语言的borrow checker保证内存安全，cargo负责构建。",
        "d": "今天天气很好，我们去公园散步。",
    }
    with rare.retrievers.create(backend, language="zh", analyzer=analyzer) as retriever:
        retriever.index(list(docs), list(docs.values()))
        retriever.commit()
        hits = retriever.search_batch(["transformer attention", "borrow checker",
                                       "2,189", "中国的首都", "公园"], 1)
    assert [h[0][0] for h in hits] == ["a", "c", "b", "b", "d"]
