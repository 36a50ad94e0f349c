"""Peak memory and time of mining hard negatives for every wiki205k row, jsonl in and out.

Each of the 205,101 passages is a row (``id``, ``text``) with a question made of its first
words; BM25HardNeg indexes all rows and mines ``num_neg`` negatives for each, through
``rare run`` in a child process, whose peak RSS (``ru_maxrss``) and wall time are printed.

    python benchmarks/stream_memory.py [--rows N] [--retriever tantivy] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki205k" / "corpus.jsonl.gz"


def make_input(path: Path, rows: int | None) -> int:
    count = 0
    with gzip.open(DATA, "rt", encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
        for line in src:
            doc = json.loads(line)
            words = doc["text"].split()
            out.write(json.dumps({"id": doc["_id"], "text": doc["text"],
                                  "question": " ".join(words[:12])}) + "\n")
            count += 1
            if rows and count >= rows:
                break
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="first N passages (default: all)")
    parser.add_argument("--retriever", default="tantivy")
    parser.add_argument("--num-neg", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rare-stream-") as tmp:
        work = Path(tmp)
        count = make_input(work / "docs.jsonl", args.rows)
        config = work / "pipeline.toml"
        run = {"num_neg": args.num_neg, "input_id_key": "id"}
        config.write_text(
            f'[pipeline]\ninput = "{work / "docs.jsonl"}"\noutput = "{work / "out.jsonl"}"\n'
            f'cache_path = "{work / "cache"}"\n\n[retriever]\nname = "{args.retriever}"\n\n'
            f'[[steps]]\noperator = "BM25HardNeg"\nrun = {json.dumps(run).replace(":", " =")}\n')
        env = dict(os.environ)
        if args.batch_size:
            env["RARE_BATCH_SIZE"] = str(args.batch_size)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rare.cli", "run", "--config", str(config)],
                              capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out_rows = sum(1 for _ in (work / "out.jsonl").open())
        print(f"rows {count} -> {out_rows}, retriever {args.retriever}, num_neg {args.num_neg}")
        print(f"wall {seconds:.1f} s, peak RSS {peak_mb:,.0f} MB")
        print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")


if __name__ == "__main__":
    main()
