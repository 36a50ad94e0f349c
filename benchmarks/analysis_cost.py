"""What analysis costs per MB of text in the Rust backend: English vs Chinese analyzers.

    python benchmarks/analysis_cost.py [--repeat 5] [--threads 1]

English: wiki205k passages (analyzers "lucene" and "rare"); Chinese: the three sets of
../shared/data/zh, documents and queries (analyzers "cjk" and "jieba"). Each analyzer runs
in Rust over the whole text list (``rare_bm25_rs.count_terms``, no Python object per
term); the best of ``--repeat`` runs is reported, in MB of UTF-8 per second and as a ratio
to "lucene" (what the issue's target, Chinese analysis <= 1.5x English per MB, reads).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def chinese_texts() -> list[str]:
    texts = []
    for name in ("stard", "cmrc2018", "csl"):
        for file in ("corpus.jsonl", "queries.jsonl"):
            with (DATA / "zh" / name / file).open(encoding="utf-8") as fh:
                texts += [json.loads(line)["text"] for line in fh]
    return texts


def english_texts(megabytes: float) -> list[str]:
    texts, size = [], 0
    with gzip.open(DATA / "wiki205k" / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            texts.append(text)
            size += len(text.encode("utf-8"))
            if size >= megabytes * 1e6:
                break
    return texts


def best_seconds(texts: list[str], analyzer: str, threads: int, repeat: int) -> float:
    from rare_bm25_rs import count_terms

    count_terms(texts[:50], analyzer, threads)  # warm-up: jieba loads its dictionary
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        count_terms(texts, analyzer, threads)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from rare_bm25_rs import count_terms

    zh = chinese_texts()
    zh_mb = sum(len(t.encode("utf-8")) for t in zh) / 1e6
    en = english_texts(zh_mb)
    en_mb = sum(len(t.encode("utf-8")) for t in en) / 1e6
    rows = []
    for analyzer, texts, mb in (("lucene", en, en_mb), ("rare", en, en_mb),
                                ("cjk", zh, zh_mb), ("jieba", zh, zh_mb)):
        seconds = best_seconds(texts, analyzer, args.threads, args.repeat)
        terms = count_terms(texts, analyzer, args.threads)
        rows.append((analyzer, mb, seconds, terms))
    base = rows[0][2] / rows[0][1]  # lucene: seconds per MB
    print(f"{'analyzer':<10}{'MB':>7}{'s':>8}{'MB/s':>8}{'terms':>10}{'s/MB vs lucene':>16}")
    for analyzer, mb, seconds, terms in rows:
        print(f"{analyzer:<10}{mb:>7.2f}{seconds:>8.3f}{mb / seconds:>8.1f}{terms:>10,}"
              f"{(seconds / mb) / base:>16.2f}")


if __name__ == "__main__":
    main()
