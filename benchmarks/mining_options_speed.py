"""What the mining options cost: queries per second and CPU time per query of plain top-k,
the window, the random draw, the margin and window+margin, on one backend.

    python benchmarks/mining_options_speed.py [--docs 0] [--rounds 7] [--threads 2]
        [--index-dir /tmp/wiki205k-tantivy] [--backend tantivy] [--no-near-duplicate]
        [--variants top-k,random] [--random-windows 0-10,10-20,10-30]

The variants are :data:`rare.bench.negatives.DEFAULT_VARIANTS` (those of ``rare bench``),
mined at the default depth with each wiki205k query's judged passage as its positive.
Timings on a busy machine are noisy, so the variants are interleaved: each round times
every variant once, in a rotated order, and the figures are medians over the rounds, with
each variant's ratio to top-k's taken round by round (then the median of those ratios).
``--index-dir`` keeps the tantivy index between runs (built there when missing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import rare.retrievers
from rare.bench import DataSpec
from rare.bench.data import load_dataset
from rare.bench.negatives import DEFAULT_VARIANTS, Variant

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wiki205k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=0, help="first N passages (0: all)")
    parser.add_argument("--queries", type=int, default=None, help="first N queries")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-neg", type=int, default=3)
    parser.add_argument("--backend", default="tantivy")
    parser.add_argument("--index-dir", help="tantivy: keep the index here (built if missing)")
    parser.add_argument("--no-near-duplicate", action="store_true",
                        help="mine without the near-duplicate rule")
    parser.add_argument("--variants", help="comma-separated names (default: all)")
    parser.add_argument("--random-windows", metavar="START-END,...",
                        help="also random draws from these windows (e.g. 0-10,10-20,10-30): "
                             "what a random draw costs by the window's depth")
    args = parser.parse_args()

    spec = DataSpec(str(DATA / "corpus.jsonl.gz"), str(DATA / "queries.tsv"),
                    str(DATA / "qrels.txt"), max_docs=args.docs or None,
                    max_queries=args.queries)
    options: dict[str, object] = {}
    if args.no_near_duplicate:
        options["near_duplicate"] = None
    saved = False
    if args.index_dir:
        options["path"] = args.index_dir
        saved = Path(args.index_dir, "meta.json").exists()
    started = time.perf_counter()
    data = load_dataset(spec)
    retriever = rare.retrievers.create(args.backend, **options)
    if not saved:
        retriever.index(data.ids, data.texts)
        retriever.commit()
    print(f"{args.backend}: {len(retriever)} passages, {len(data.queries)} queries, "
          f"threads {args.threads}, num_neg {args.num_neg}, near-duplicate rule "
          f"{'off' if args.no_near_duplicate else 'on'} "
          f"(ready in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    variants = [v for v in DEFAULT_VARIANTS
                if not args.variants or v.name in args.variants.split(",")]
    if variants[0].name != "top-k":
        variants = [DEFAULT_VARIANTS[0], *variants]
    for window in (args.random_windows or "").split(","):
        if window:
            start, _, end = window.partition("-")
            variants.append(Variant(f"random {start}-{end}", start_rank=int(start),
                                    end_rank=int(end), sampling="random"))
    n = len(data.queries)

    def mine(variant: object) -> tuple[float, float]:
        settings = variant.mine_settings()  # type: ignore[attr-defined]
        t0, c0 = time.perf_counter(), time.process_time()
        retriever.mine(data.queries, data.positives, args.num_neg, threads=args.threads,
                       **settings)
        return time.perf_counter() - t0, time.process_time() - c0

    for variant in variants:  # warm-up, untimed
        mine(variant)
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for variant in order:
            w, c = mine(variant)
            wall[variant.name].append(w)
            cpu[variant.name].append(c)
    print(f"\n{'variant':<15}{'settings':<26}{'q/s':>8}{'CPU ms/q':>10}"
          f"{'q/s vs top-k':>14}{'CPU vs top-k':>14}")
    base = variants[0].name
    for variant in variants:
        name = variant.name
        qps = n / statistics.median(wall[name])
        ms = 1000 * statistics.median(cpu[name]) / n
        wall_ratio = statistics.median(b / w for b, w in zip(wall[base], wall[name]))
        cpu_ratio = statistics.median(c / b for b, c in zip(cpu[base], cpu[name]))
        print(f"{name:<15}{variant.describe():<26}{qps:>8.0f}{ms:>10.3f}"
              f"{100 * (wall_ratio - 1):>+13.1f}%{100 * (cpu_ratio - 1):>+13.1f}%")
    print(f"\n(medians of {args.rounds} interleaved rounds; 'q/s vs top-k' is the change in "
          "throughput, 'CPU vs top-k' in CPU time per query; load average "
          f"{os.getloadavg()[0]:.1f})")
    close = getattr(retriever, "close", None)
    if close is not None:
        close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
