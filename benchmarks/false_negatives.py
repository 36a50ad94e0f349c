"""How many mined hard negatives are in fact relevant: the false-negative table.

For each collection, every query with two or more relevant documents is mined once per
relevant document, that document the positive; a mined negative that the qrels call
relevant is a false negative. Each variant (plain top-k, a rank window, the margin against
the positive's own score, random sampling, the LLM judge) is mined over all pairs:

    python benchmarks/false_negatives.py                        # CACM and STARD, tantivy
    python benchmarks/false_negatives.py --sweep                # + a sweep of the margin
    python benchmarks/false_negatives.py --judge-url http://127.0.0.1:8080/v1/chat/completions \\
        --judge-model smollm2 --judge-pairs 60                  # + the judge, on a sample

Collections: ``../shared/data/cacm`` (TREC topics and qrels) and ``../shared/data/zh/stard``
(BEIR layout). The judge variants run on a seeded sample of ``--judge-pairs`` pairs (every
variant is also reported on that sample, so the rows compare). ``--json`` writes the table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from rare.bench.data import read_corpus
from rare.bench.negatives import (
    RATIO,
    Pairs,
    Variant,
    make_pairs,
    measure_negatives,
    print_negatives,
    read_beir_qrels,
    read_beir_queries,
)
from rare.evaluation import read_qrels, read_topics

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

def variants(ratio: float) -> list[Variant]:
    return [
        Variant("top-k"),
        Variant("window 10..", start_rank=10),
        Variant("random 10..60", start_rank=10, end_rank=60, sampling="random"),
        Variant(f"margin {ratio:g}", max_score_ratio=ratio),
        Variant("margin 0.5", max_score_ratio=0.5),
        Variant(f"window 10.. + margin {ratio:g}", start_rank=10, max_score_ratio=ratio),
    ]


def sweep() -> list[Variant]:
    return [Variant(f"ratio {r:g}", max_score_ratio=r)
            for r in (0.9, 0.8, 0.7, 0.6, 0.4, 0.3)] + \
        [Variant(f"gap {g:g}", min_score_gap=g) for g in (1.0, 2.0, 4.0)]


def judge_variants(ratio: float) -> list[Variant]:
    return [Variant("top-k + judge", judge=True),
            Variant(f"margin {ratio:g} + judge", max_score_ratio=ratio, judge=True)]


def load(name: str, data: Path) -> tuple[list[str], list[str], Pairs]:
    if name == "cacm":
        ids, texts = read_corpus(data / "cacm" / "cacm.jsonl")
        queries = read_topics(data / "cacm" / "topics.cacm.txt")
        qrels = read_qrels(data / "cacm" / "qrels.cacm.txt")
    elif name == "stard":
        root = data / "zh" / "stard"
        ids, texts = read_corpus(root / "corpus.jsonl")
        queries = read_beir_queries(root / "queries.jsonl")
        qrels = read_beir_qrels(root / "qrels" / "test.tsv")
    else:
        raise SystemExit(f"unknown collection {name!r}: cacm or stard")
    return ids, texts, make_pairs(queries, qrels, set(ids))


def sample(pairs: Pairs, n: int, seed: int = 0) -> Pairs:
    if n >= len(pairs):
        return pairs
    keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return Pairs([pairs.qids[i] for i in keep], [pairs.queries[i] for i in keep],
                 [pairs.positives[i] for i in keep], pairs.qrels,
                 len({pairs.qids[i] for i in keep}))


def make_judge(args: argparse.Namespace) -> Any:
    from rare_stages.judge import FalseNegativeJudge

    import rare.serving

    if args.judge_url:
        serving = rare.serving.create("openai", api_url=args.judge_url,
                                      model_name=args.judge_model or "default",
                                      max_workers=args.judge_workers,
                                      context_window=args.judge_context,
                                      structured_output="json_object", temperature=0.0,
                                      seed=0)
    else:
        serving = rare.serving.create("embedded", n_ctx=args.judge_context, temperature=0.0)
    return FalseNegativeJudge(serving, control_rate=args.judge_control)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--collections", default="cacm,stard")
    parser.add_argument("--backend", default="tantivy")
    parser.add_argument("--num-neg", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=RATIO)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sweep", action="store_true", help="also sweep max_score_ratio")
    parser.add_argument("--judge-url", help="OpenAI-compatible chat-completions URL")
    parser.add_argument("--judge-model")
    parser.add_argument("--judge-embedded", action="store_true",
                        help="judge with the embedded model (slow on 2 cores)")
    parser.add_argument("--judge-pairs", type=int, default=60)
    parser.add_argument("--judge-context", type=int, default=2048)
    parser.add_argument("--judge-workers", type=int, default=2)
    parser.add_argument("--judge-control", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="write every table here")
    args = parser.parse_args(argv)

    import rare.retrievers

    report: dict[str, Any] = {"backend": args.backend, "num_neg": args.num_neg, "tables": {}}
    judge = make_judge(args) if args.judge_url or args.judge_embedded else None
    for name in args.collections.split(","):
        ids, texts, pairs = load(name, args.data)
        print(f"{name}: {len(ids):,} documents, {pairs.num_queries} queries with >= 2 relevant "
              f"documents, {len(pairs)} query-positive pairs", file=sys.stderr)
        with rare.retrievers.create(args.backend) as retriever:
            start = time.perf_counter()
            retriever.index(ids, texts)
            retriever.commit()
            print(f"  indexed in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            chosen = variants(args.ratio) + (sweep() if args.sweep else [])
            rows = measure_negatives(retriever, pairs, chosen, args.num_neg, args.threads,
                                     progress=lambda line: print(line, file=sys.stderr))
            title = (f"{name}: {len(pairs)} query-positive pairs ({pairs.num_queries} queries),"
                     f" {args.backend}, num_neg {args.num_neg}")
            print_negatives(rows, title)
            report["tables"][name] = [r.as_dict() for r in rows]
            if judge is not None:
                few = sample(pairs, args.judge_pairs)
                rows = measure_negatives(
                    retriever, few, variants(args.ratio)[:1] + variants(args.ratio)[3:4]
                    + judge_variants(args.ratio), args.num_neg, args.threads, judge=judge,
                    progress=lambda line: print(line, file=sys.stderr))
                print_negatives(rows, f"{name}: judge on a sample of {len(few)} pairs "
                                      f"({judge.serving.describe()})")
                report["tables"][f"{name}-judge"] = [r.as_dict() for r in rows]
    if judge is not None:
        judge.serving.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
