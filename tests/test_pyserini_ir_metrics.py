"""The IR metric helpers (tests/ir_metrics.py) that backend tests use, checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import ir_metrics
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_ndcg_recall_mrr_by_hand() -> None:
    judged = {"a": 1, "b": 2, "c": 0, "z": 1}
    ranked = ["c", "b", "x", "a"]
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ir_metrics.ndcg_at_k(ranked, judged, 10) == pytest.approx(dcg / idcg)
    assert ir_metrics.ndcg_at_k(ranked, judged, 1) == 0.0
    assert ir_metrics.ndcg_at_k(["b", "a", "z"], judged, 3) == pytest.approx(1.0)
    assert ir_metrics.ndcg_at_k(ranked, {"c": 0}, 10) == 0.0
    assert ir_metrics.recall_at_k(ranked, judged, 2) == pytest.approx(1 / 3)
    assert ir_metrics.recall_at_k(ranked, judged, 4) == pytest.approx(2 / 3)
    assert ir_metrics.reciprocal_rank(ranked, judged) == 0.5
    assert ir_metrics.reciprocal_rank(ranked, judged, k=1) == 0.0
    run = {"q1": ranked, "q3": ["nothing"]}
    qrels = {"q1": judged, "q2": {"a": 1}}  # q2 has no results: counts as 0
    assert ir_metrics.mrr(run, qrels) == pytest.approx(0.25)
    assert ir_metrics.ndcg(run, qrels, 10) == pytest.approx(dcg / idcg / 2)
    assert ir_metrics.recall(run, qrels, 4) == pytest.approx(1 / 3)


def test_read_trec_topics_both_layouts(tmp_path: Path) -> None:
    robust = tmp_path / "robust.txt"
    robust.write_text(
        "<top>\n<num> Number: 301\n<title> International Organized Crime\n\n"
        "<desc> Description:\nIdentify organizations.\n</top>\n"
        "<top>\n<num> Number: 302 \n<title> Topic: Poliomyelitis and Post-Polio\n</top>\n"
    )
    assert ir_metrics.read_topics(robust) == {
        "301": "International Organized Crime", "302": "Poliomyelitis and Post-Polio"}
    topics = ir_metrics.read_topics(DATA / "cacm" / "topics.cacm.txt")
    assert len(topics) == 64
    assert topics["2"] == ("I am interested in articles written either by Prieve or Udo Pooch "
                           "Prieve, B. Pooch, U.")
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing here")
    with pytest.raises(ValueError):
        ir_metrics.read_topics(empty)


def test_read_qrels(tmp_path: Path) -> None:
    qrels = ir_metrics.read_qrels(DATA / "cacm" / "qrels.cacm.txt")
    assert len(qrels) == 52 and sum(map(len, qrels.values())) == 796
    assert qrels["1"]["CACM-1410"] == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("1 doc\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 4 columns \(TREC\) or 3"):
        ir_metrics.read_qrels(bad)
    bad.write_text("1 0 doc 1\n1 doc x\n")  # a BEIR line whose relevance is no number
    with pytest.raises(ValueError, match=r"bad\.txt:2: relevance 'x' is not an integer"):
        ir_metrics.read_qrels(bad)
