"""Where the time goes: index wiki205k, search its 1,000 queries (top-100), split the cost.

    python plugins/rare-pyserini/scripts/profile_wiki205k.py [--threads 2] [--k 100] [--index DIR]

Reports index build time, then for search_batch: wall time, the time threads spent inside
the JVM (query building + search + re-sort by id + JSON) and in Python (decoding), and, for
comparison in the same process, Pyserini's own batch path (Anserini's SimpleSearcher
.batch_search with Java threads, then one Python object per hit, as pyserini's
LuceneSearcher.batch_search does). Also times mine(), the plugin's and the base class's.
The machine is shared and noisy: compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

from rare_pyserini import PyseriniRetriever

from rare import Retriever

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "wiki205k"


def load_corpus() -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with gzip.open(DATA / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(row["_id"])
            texts.append(row["text"])
    return ids, texts


def load_queries() -> tuple[list[str], list[str]]:
    qids, queries = [], []
    with open(DATA / "queries.tsv", encoding="utf-8") as fh:
        for line in fh:
            qid, query = line.rstrip("\n").split("\t", 1)
            qids.append(qid)
            queries.append(query)
    return qids, queries


def timed_search(r: PyseriniRetriever, queries: list[str], k: int, threads: int) -> dict:
    """search_batch, with each thread's time split into JVM work and Python decoding.

    "JVM" is everything per query but decoding: analysis, search, re-sort by id, Jackson,
    the JSON string crossing JNI. "Python" is json.loads and turning hex ids into str.
    """
    total: dict[int, float] = defaultdict(float)
    decode: dict[int, float] = defaultdict(float)
    search_one, hits = r._search_one, r._hits

    def timed_one(*args):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = search_one(*args)
        total[threading.get_ident()] += time.perf_counter() - t0
        return out

    def timed_hits(serialized):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = hits(serialized)
        decode[threading.get_ident()] += time.perf_counter() - t0
        return out

    r._search_one, r._hits = timed_one, timed_hits  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        r.search_batch(queries, k, threads=threads)
        wall = time.perf_counter() - t
    finally:
        del r._search_one, r._hits
    return {"wall_s": wall,
            "jvm_s_per_thread": [total[i] - decode[i] for i in total],
            "python_s_per_thread": [decode[i] for i in total]}


def pyserini_path(r: PyseriniRetriever, qids: list[str], queries: list[str], k: int,
                  threads: int) -> dict:
    from jnius import autoclass

    searcher = autoclass("io.anserini.search.SimpleSearcher")(str(r.path))
    searcher.set_bm25(r.k1, r.b)
    array_list = autoclass("java.util.ArrayList")
    jq, jid = array_list(), array_list()
    for q, qid in zip(queries, qids, strict=True):
        jq.add(q)
        jid.add(qid)
    t = time.perf_counter()
    results = searcher.batch_search(jq, jid, k, threads)
    t1 = time.perf_counter()
    hits = {e.getKey(): [(h.docid, h.score) for h in e.getValue()]
            for e in results.entrySet().toArray()}
    t2 = time.perf_counter()
    searcher.close()
    return {"jvm_s": t1 - t, "python_s": t2 - t1, "total_s": t2 - t, "hits": hits}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--index", help="index directory (reused when it holds an index)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    t = time.perf_counter()
    r = PyseriniRetriever(path=args.index)
    print(f"start JVM + open: {time.perf_counter() - t:.2f} s")
    qids, queries = load_queries()
    if len(r) == 0:
        t = time.perf_counter()
        ids, texts = load_corpus()
        print(f"read corpus: {time.perf_counter() - t:.2f} s ({len(ids)} passages)")
        t = time.perf_counter()
        for start in range(0, len(ids), 50_000):
            r.index(ids[start:start + 50_000], texts[start:start + 50_000])
        t1 = time.perf_counter()
        r.commit()
        t2 = time.perf_counter()
        print(f"index: spool {t1 - t:.2f} s + Anserini IndexCollection/commit {t2 - t1:.2f} s"
              f" = {t2 - t:.2f} s")
    print(f"docs: {len(r)}")

    for rep in range(args.repeat):
        t = time.perf_counter()
        ours = r.search_batch(queries, args.k, threads=args.threads)
        wall = time.perf_counter() - t
        split = timed_search(r, queries, args.k, args.threads)
        ref = pyserini_path(r, qids, queries, args.k, args.threads)
        print(f"[{rep}] search_batch: {wall:.2f} s ({len(queries) / wall:.0f} q/s)")
        print(f"[{rep}]   instrumented: wall {split['wall_s']:.2f} s; JVM per thread "
              f"{[round(x, 2) for x in split['jvm_s_per_thread']]} s; Python per thread "
              f"{[round(x, 2) for x in split['python_s_per_thread']]} s")
        print(f"[{rep}] pyserini path: JVM {ref['jvm_s']:.2f} s + Python objects per hit "
              f"{ref['python_s']:.2f} s = {ref['total_s']:.2f} s")
    same10 = sum([d for d, _ in ours[i][:10]] == [d for d, _ in ref["hits"][q][:10]]
                 for i, q in enumerate(qids))
    overlap = sum(len({d for d, _ in ours[i][:10]} & {d for d, _ in ref["hits"][q][:10]})
                  for i, q in enumerate(qids)) / (10 * len(qids))
    print(f"vs pyserini path: top-10 overlap {overlap:.4f}, identical top-10 lists "
          f"{same10}/{len(qids)}")
    qrels = {}
    with open(DATA / "qrels.txt", encoding="utf-8") as fh:
        for line in fh:
            qid, _, doc_id, _ = line.split()
            qrels[qid] = doc_id
    ranks = [next((rank for rank, (d, _) in enumerate(hits) if d == qrels[qid]), None)
             for qid, hits in zip(qids, ours, strict=True)]
    mrr = sum(1 / (rank + 1) for rank in ranks if rank is not None) / len(qids)
    print(f"MRR@{args.k}: {mrr:.4f}")

    positives = [qrels[q] for q in qids]
    for depth in (50, args.k):
        t = time.perf_counter()
        mined = r.mine(queries, positives, num_neg=3, threads=args.threads, depth=depth)
        t1 = time.perf_counter()
        r._lucene_ids.clear()  # as cold as for the plugin's own run
        base = Retriever.mine(r, queries, positives, num_neg=3, threads=args.threads,
                              depth=depth)
        t2 = time.perf_counter()
        assert list(base) == list(mined)
        print(f"mine num_neg=3 depth={depth}: {t1 - t:.2f} s (the base class's mine(), which "
              f"reads every candidate's text: {t2 - t1:.2f} s); short queries: "
              f"{len(mined.short_queries)}")
    t = time.perf_counter()
    deep = r.search_batch(queries, args.k, threads=args.threads)
    t1 = time.perf_counter()
    candidate_ids = [d for hits in deep for d, _ in hits]
    r.get_texts(candidate_ids)
    t2 = time.perf_counter()
    print(f"  search top-{args.k}: {t1 - t:.2f} s; get_texts of its {len(candidate_ids)} hits: "
          f"{t2 - t1:.2f} s")

if __name__ == "__main__":
    main()
