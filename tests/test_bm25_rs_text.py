"""rare_bm25_rs's Rust text handling must agree with rare.text's Python on real data."""

from __future__ import annotations

import itertools
import json
import random

from conftest import shared

from rare.text import EnglishAnalyzer, NearDuplicateRule, tokenize
from rare_bm25_rs import analyze as rust_analyze
from rare_bm25_rs import is_near_duplicate as rust_near_duplicate
from rare_bm25_rs import tokenize as rust_tokenize


def _texts(cacm_docs, anatomy_chunks) -> list[str]:
    texts = [d["contents"] for d in cacm_docs] + list(anatomy_chunks)
    for name in ("eval_test_data.jsonl", "pt_input.jsonl", "abbreviation.jsonl"):
        with shared("dataflow-examples", name).open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                texts.append(row.get("contents") or row.get("raw_content") or "")
    # Unicode that the data lacks: accents, Greek final sigma, digits of other scripts,
    # superscripts, underscores, a dotted capital I, CJK.
    texts += ["Ünïcödé naïve café ΣΟΦΟΣ ΟΔΟΣ x²+y³ ٣٤ snake_case İstanbul 東京タワー ①②",
              "", "   ", "___", "e.g. U.S.A. don't 3.14 C++ a-b/c"]
    return texts


def test_tokenize_and_rare_analyzer_agree(cacm_docs, anatomy_chunks) -> None:
    analyzer = EnglishAnalyzer()  # Porter (PyStemmer) on one side, frostem's Porter on the other
    texts = _texts(cacm_docs, anatomy_chunks)
    texts += ["Smith's house, the cats\u2019 s toys", "it's x's's 's JOHN'S", "O'Neil's 'quote's'"]
    differing = [t for t in texts if rust_tokenize(t) != tokenize(t)]
    assert differing == []
    differing = [t for t in texts if rust_analyze(t, "rare") != analyzer(t)]
    assert differing == []


def test_lucene_analyzer_is_lucene_like() -> None:
    text = "John's U.S.A. costs 3.14 or 1,000,000; don't e.g. snake_case wi-fi İstanbul ΣΑΣ"
    assert rust_analyze(text) == rust_analyze(text, "lucene") == [
        "john", "u.s.a", "cost", "3.14", "1,000,000", "don't", "e.g", "snake_cas", "wi", "fi",
        "istanbul", "σασ"]
    # Lucene's Porter (Porter's reference code) departs from the paper, PyStemmer's doesn't.
    assert rust_analyze("us technology assembly", "lucene") == ["us", "technolog", "assembl"]
    assert rust_analyze("us technology assembly", "rare") == ["u", "technologi", "assembli"]


def test_neighbouring_chunks_are_near_duplicates_in_both(anatomy_chunks) -> None:
    rule = NearDuplicateRule()
    for i, j in itertools.combinations(range(len(anatomy_chunks)), 2):
        a, b = anatomy_chunks[i], anatomy_chunks[j]
        expected = j == i + 1  # consecutive chunks overlap by ~1,000 characters
        assert rule.is_near_duplicate(a, b) is expected, (i, j)
        assert rust_near_duplicate(a, b) is expected, (i, j)


def test_rules_agree_on_random_pairs_and_thresholds(cacm_docs, anatomy_chunks) -> None:
    rng = random.Random(7)
    texts = _texts(cacm_docs, anatomy_chunks)
    # Halves of real texts glued to other texts make pairs on both sides of every threshold.
    pairs = []
    for _ in range(400):
        a, b = rng.choice(texts), rng.choice(texts)
        cut = rng.randint(0, len(a))
        pairs.append((a, a[cut:] + " " + b))
        pairs.append((a, b))
    rules = [NearDuplicateRule(), NearDuplicateRule(ngram=1, min_shared=3, min_fraction=0.3),
             NearDuplicateRule(ngram=3, min_shared=10, min_fraction=1.0),
             NearDuplicateRule(ngram=20, min_shared=1, min_fraction=0.9)]
    seen = set()
    for rule in rules:
        for a, b in pairs:
            want = rule.is_near_duplicate(a, b)
            got = rust_near_duplicate(a, b, rule.ngram, rule.min_shared, rule.min_fraction)
            assert got is want, (rule, a[:60], b[:60])
            seen.add(want)
    assert seen == {True, False}
