"""The "lucene" analyzer of rare_bm25_rs against Lucene's own EnglishAnalyzer (via Anserini).

Runs where rare-pyserini (Lucene 9.9.1 in Anserini's jar, a JVM) is installed.
"""

from __future__ import annotations

import gzip
import itertools
import json

import pytest
from conftest import shared

from rare_bm25_rs import analyze

rare_pyserini = pytest.importorskip("rare_pyserini", reason="rare-pyserini is not installed")


@pytest.fixture(scope="module")
def lucene_analyze():
    from rare_pyserini import _jvm

    _jvm.classes()  # starts the JVM with Anserini's jar on the classpath: before jnius loads
    from jnius import autoclass

    analyzer = autoclass("org.apache.lucene.analysis.en.EnglishAnalyzer")()
    utils = autoclass("io.anserini.analysis.AnalyzerUtils")
    return lambda text: list(utils.analyze(analyzer, text).toArray())


def test_lucene_analyzer_matches_lucene(lucene_analyze, cacm_docs, anatomy_chunks) -> None:
    texts = [d["contents"] for d in cacm_docs] + list(anatomy_chunks)
    with gzip.open(shared("wiki205k", "corpus.jsonl.gz"), "rt", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for line in itertools.islice(fh, 0, 200_000, 50)]
    texts += ["John's U.S.A. costs 3.14 or 1,000,000; don't e.g. snake_case İstanbul ΣΑΣ",
              "us technology assembly possibly incredibly generalizations"]
    differing = [t for t in texts if analyze(t, "lucene") != lucene_analyze(t)]
    # Known gaps: Lucene's emoji/pictograph tokens and Hebrew gershayim (see the README).
    assert len(differing) <= len(texts) // 500, differing[:5]
