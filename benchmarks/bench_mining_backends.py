#!/usr/bin/env python
"""BM25 backends side by side on wiki205k: build, batch search, mining, memory, quality.

    .venv/bin/python benchmarks/bench_mining_backends.py
    .venv/bin/python benchmarks/bench_mining_backends.py \
        --backends tantivy,pyserini,tantivy-py,bm25s

A backend is any retriever registered with rare (``rare.retrievers.names()``: ``tantivy``,
``pyserini``, ``gensim``, ...) or one of two built into this script for comparison:
``tantivy-py`` (the ``tantivy`` PyPI bindings, searched from Python on a thread pool, mined
with rare's default ``Retriever.mine``) and ``bm25s`` (its Lucene variant, with rare's stop
words and Porter stemmer). Every backend runs in its own subprocess, so its peak RSS is its
own, with thread counts pinned (RAYON_NUM_THREADS, OMP_NUM_THREADS, ...).

Measured per backend: index build time (index + commit), batch search and batch mining
throughput at top-k (queries/s, median of ``--repeat`` runs after a warm-up), peak RSS,
MRR@10 / nDCG@10 / recall@k against the qrels, and top-10 overlap with every other
backend. Prints a table and writes one JSON (``--out``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "wiki205k"
sys.path.insert(0, str(REPO / "tests"))  # ir_metrics: trec_eval-style metrics

from rare import Retriever  # noqa: E402
from rare.retriever import Hits  # noqa: E402
from rare.text import LUCENE_ENGLISH_STOPWORDS, tokenize  # noqa: E402

DEFAULT_BACKENDS = "tantivy,tantivy-py,bm25s"
THREAD_VARS = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def load(data: Path, max_docs: int, max_queries: int
         ) -> tuple[list[str], list[str], list[str], list[str], dict[str, dict[str, int]]]:
    import ir_metrics

    ids, texts = [], []
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(row["_id"])
            texts.append(row["text"])
            if max_docs and len(ids) >= max_docs:
                break
    qrels = ir_metrics.read_qrels(data / "qrels.txt")
    known = set(ids)
    qids, queries = [], []
    with open(data / "queries.tsv", encoding="utf-8") as fh:
        for line in fh:
            qid, query = line.rstrip("\n").split("\t", 1)
            if any(doc in known for doc in qrels.get(qid, {})):
                qids.append(qid)
                queries.append(query)
            if max_queries and len(qids) >= max_queries:
                break
    return ids, texts, qids, queries, qrels


# -- backends driven from Python, for comparison -------------------------------------------
class TantivyPy(Retriever):
    """The tantivy PyPI bindings as a Python user drives them: one search call per query on a
    thread pool, ids through a numeric fast field, texts from a dict, mining by rare's
    default ``Retriever.mine``. Analyzer: simple tokenizer, lowercase, tantivy's English
    stop words (Lucene's list) and Snowball English (the bindings offer no Porter)."""

    name = "tantivy-py"

    def __init__(self, threads: int, **options: Any) -> None:
        import tantivy

        super().__init__(**options)
        self._tantivy = tantivy
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("text", tokenizer_name="lucene_en", index_option="freq")
        builder.add_integer_field("row", fast=True)  # Python ints are i64 there
        self._index = tantivy.Index(builder.build())
        analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
                    .filter(tantivy.Filter.lowercase())
                    .filter(tantivy.Filter.stopword("english"))
                    .filter(tantivy.Filter.stemmer("english")).build())
        self._index.register_tokenizer("lucene_en", analyzer)
        self._writer = self._index.writer(256_000_000, num_threads=threads)
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._searcher: Any = None

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        document = self._tantivy.Document
        for doc_id, text in zip(ids, texts, strict=True):
            self._writer.add_document(document(text=text, row=len(self._ids)))
            self._ids.append(doc_id)
            self._texts[doc_id] = text

    def commit(self) -> None:
        self._writer.commit()
        self._writer.wait_merging_threads()
        self._writer = self._index.writer(256_000_000, num_threads=1)
        self._index.reload()
        self._searcher = self._index.searcher()

    def _search(self, query: str, k: int) -> Hits:
        words = " ".join(tokenize(query))  # no query syntax: a bag of words
        if not words:
            return []
        hits = self._searcher.search(self._index.parse_query(words, ["text"]), k).hits
        rows = self._searcher.fast_field_values("row", [addr for _, addr in hits])
        return [(self._ids[row], score) for (score, _), row in zip(hits, rows, strict=True)]

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        return list(self._pool.map(lambda q: self._search(q, k), queries))

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return [self._texts.get(doc_id) for doc_id in ids]

    def __len__(self) -> int:
        return len(self._ids)


class Bm25s(Retriever):
    """bm25s (method "lucene") over rare's tokens: lowercase alphanumeric runs, Lucene's
    stop words, PyStemmer's Porter. Texts from a dict; mining by ``Retriever.mine``."""

    name = "bm25s"

    def __init__(self, threads: int, **options: Any) -> None:
        import Stemmer

        super().__init__(**options)
        self._threads = threads
        self._stemmer = Stemmer.Stemmer("porter")
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._model: Any = None

    def _tokens(self, texts: Sequence[str]) -> Any:
        import bm25s

        return bm25s.tokenize(list(texts), token_pattern=r"(?u)[^\W_]+",
                              stopwords=sorted(LUCENE_ENGLISH_STOPWORDS),
                              stemmer=self._stemmer, show_progress=False, return_ids=False)

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self._ids.extend(ids)
        self._texts.update(zip(ids, texts, strict=True))

    def commit(self) -> None:
        import bm25s

        self._model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._model.index(self._tokens([self._texts[i] for i in self._ids]), show_progress=False)

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        k = min(k, len(self._ids))
        docs, scores = self._model.retrieve(self._tokens(queries), k=k, n_threads=self._threads,
                                            show_progress=False)
        return [[(self._ids[d], float(s)) for d, s in zip(row, srow, strict=True) if s > 0]
                for row, srow in zip(docs.tolist(), scores.tolist(), strict=True)]

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return [self._texts.get(doc_id) for doc_id in ids]

    def __len__(self) -> int:
        return len(self._ids)


def make_backend(name: str, threads: int, k1: float, b: float) -> Retriever:
    if name == "tantivy-py":
        return TantivyPy(threads, k1=k1, b=b)
    if name == "bm25s":
        return Bm25s(threads, k1=k1, b=b)
    import rare.retrievers

    return rare.retrievers.create(name, k1=k1, b=b)


# -- one backend, in its own process ------------------------------------------------------
def timed(repeat: int, call: Any) -> tuple[float, float, Any]:
    """Median wall and CPU seconds (all threads of the process) of ``repeat`` calls.

    CPU time is the figure to trust on a shared machine: other processes stretch wall time.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        cpu, start = cpu_seconds(), time.perf_counter()
        result = call()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(args: argparse.Namespace) -> dict[str, Any]:
    ids, texts, qids, queries, qrels = load(args.data, args.docs, args.queries)
    positives = [next(d for d in qrels[q] if qrels[q][d] > 0) for q in qids]
    baseline = peak_rss_mb()
    backend = make_backend(args.worker, args.threads, args.k1, args.b)

    def build() -> None:
        for at in range(0, len(ids), args.batch):
            backend.index(ids[at:at + args.batch], texts[at:at + args.batch])
        backend.commit()

    build_s, build_cpu_s, _ = timed(1, build)
    backend.search_batch(queries[:20], args.k, threads=args.threads)  # warm-up
    search_s, search_cpu_s, hits = timed(
        args.repeat, lambda: backend.search_batch(queries, args.k, threads=args.threads))
    mine_s, mine_cpu_s, mined = timed(args.repeat, lambda: backend.mine(
        queries, positives, args.num_neg, threads=args.threads, depth=args.k))
    n = len(queries)
    return {
        "backend": args.worker, "docs": len(ids), "queries": n,
        "build_s": build_s, "build_cpu_s": build_cpu_s,
        "search_s": search_s, "search_cpu_s": search_cpu_s, "search_qps": n / search_s,
        "search_cpu_ms_per_query": 1000 * search_cpu_s / n,
        "mine_s": mine_s, "mine_cpu_s": mine_cpu_s, "mine_qps": n / mine_s,
        "mine_cpu_ms_per_query": 1000 * mine_cpu_s / n,
        "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
        "shortfall": sum(mined.shortfall),
        "run": {q: [d for d, _ in h] for q, h in zip(qids, hits, strict=True)},
    }


# -- the driver -----------------------------------------------------------------------------
def overlap_at_10(a: dict[str, list[str]], b: dict[str, list[str]]) -> float:
    qids = [q for q in a if q in b]
    return sum(len(set(a[q][:10]) & set(b[q][:10])) / 10 for q in qids) / max(1, len(qids))


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    import ir_metrics

    env = {**os.environ, **{var: str(args.threads) for var in THREAD_VARS}}
    results: dict[str, dict[str, Any]] = {}
    for name in args.backends.split(","):
        out = args.out.with_name(f".{args.out.stem}.{name}.json")
        cmd = [sys.executable, __file__, "--worker", name, "--result", str(out)] + [
            f"--{opt}={getattr(args, opt.replace('-', '_'))}"
            for opt in ("data", "docs", "queries", "threads", "k", "num-neg", "k1", "b",
                        "repeat", "batch")]
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
        if proc.returncode != 0:
            error = f"exit status {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            results[name] = {"backend": name, "error": error}
            print(f"[{name}] failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(out.read_text())
        out.unlink()
    ok = {n: r for n, r in results.items() if "error" not in r}
    _, _, _, _, qrels = load(args.data, 1, 1)
    for r in ok.values():
        judged = {q: qrels[q] for q in r["run"]}
        r["mrr@10"] = ir_metrics.mrr(r["run"], judged, 10)
        r["ndcg@10"] = ir_metrics.ndcg(r["run"], judged, 10)
        r[f"recall@{args.k}"] = ir_metrics.recall(r["run"], judged, args.k)
    for name, r in ok.items():
        r["top10_overlap"] = {other: overlap_at_10(r["run"], o["run"])
                              for other, o in ok.items() if other != name}
    summary = {
        "dataset": args.data.name, "threads": args.threads, "top_k": args.k,
        "num_neg": args.num_neg, "k1": args.k1, "b": args.b, "repeat": args.repeat,
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
        "backends": {n: {k: v for k, v in r.items() if k != "run" or args.keep_runs}
                     for n, r in results.items()},
    }
    return summary


def print_table(summary: dict[str, Any]) -> None:
    rows = summary["backends"]
    ok = [r for r in rows.values() if "error" not in r]
    names = [r["backend"] for r in ok]
    k = summary["top_k"]
    head = (f"{'backend':<12}{'docs':>8}{'build s':>9}{'search q/s':>12}{'mine q/s':>10}"
            f"{'cpu ms/q':>9}{'mine cpu':>9}{'peak MB':>9}{'MRR@10':>8}{'nDCG@10':>9}"
            f"{f'R@{k}':>7}")
    print(f"\n{summary['dataset']}: top-{k}, {summary['threads']} threads, "
          f"num_neg={summary['num_neg']}, k1={summary['k1']} b={summary['b']} "
          f"(cpu ms/q: CPU time of all threads per query, search and mining; "
          f"ov: top-10 overlap)")
    print(head + "".join(f"{'ov:' + n[:8]:>12}" for n in names))
    for r in ok:
        line = (f"{r['backend']:<12}{r['docs']:>8}{r['build_s']:>9.2f}{r['search_qps']:>12.0f}"
                f"{r['mine_qps']:>10.0f}{r['search_cpu_ms_per_query']:>9.2f}"
                f"{r['mine_cpu_ms_per_query']:>9.2f}{r['peak_rss_mb']:>9.0f}{r['mrr@10']:>8.4f}"
                f"{r['ndcg@10']:>9.4f}{r[f'recall@{k}']:>7.3f}")
        line += "".join(f"{r['top10_overlap'].get(n, 1.0):>12.3f}" for n in names)
        print(line)
    for r in rows.values():
        if "error" in r:
            print(f"{r['backend']:<12}failed: {r['error'].splitlines()[-1] if r['error'] else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=DEFAULT_BACKENDS,
                        help=f"comma-separated (default {DEFAULT_BACKENDS})")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--docs", type=int, default=0, help="use the first N passages (0 = all)")
    parser.add_argument("--queries", type=int, default=0, help="use N queries (0 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=100, help="search depth (top-k)")
    parser.add_argument("--num-neg", type=int, default=3)
    parser.add_argument("--k1", type=float, default=1.2)
    parser.add_argument("--b", type=float, default=0.75)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50_000, help="documents per index() call")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per backend")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "mining_backends.json")
    parser.add_argument("--keep-runs", action="store_true", help="keep per-query top-k in JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.result.write_text(json.dumps(worker(args)))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = run_all(args)
    args.out.write_text(json.dumps(summary, indent=2))
    print_table(summary)
    print(f"\nwrote {args.out}")
    return 0 if all("error" not in r for r in summary["backends"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
