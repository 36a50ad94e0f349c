"""LLM-stage throughput of the Ray runner against K endpoints of fixed latency, as a ratio to
the ideal.

K fault servers (tests/fault_server.py), each answering one request at a time after
``--latency`` seconds, stand for K model replicas; their ideal throughput together is
K / latency requests per second. A Doc2Query step runs through the ``ray`` runner with a
pool of 1, 2, 4, 8 actors (``-X api_urls``: actor *i* calls endpoint *i* mod K, one call in
flight per actor by default). Each run gets fresh rows and a fresh cache folder and runs
without the response cache, so every row is one call. Printed per pool size:

* ``steady``: requests per second between the moment every endpoint in use had its first
  request and the first endpoint's last reply, from the servers' own logs, / ideal;
* ``overall``: requests / (last reply - first request), / ideal;
* ``stage``: the stage's wall time on the driver, actor start-up included.

    python benchmarks/ray_throughput.py [--endpoints 4] [--latency 0.2] [--actors 1,2,4,8]
        [--rows-per-actor 48] [--batch-size 4] [--max-workers 1] [--address HOST:PORT]

Without ``--address`` a Ray instance with ``--num-cpus`` logical CPUs is started here. Run it
on an idle machine: the figure measures the runner, not the neighbours.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TQDM_DISABLE", "1")  # the figures, not the driver's progress bar

from fault_server import FaultServerProcess  # noqa: E402

from rare.pipeline import Pipeline, Step  # noqa: E402
from rare.storage import write_records  # noqa: E402

WORDS = ("lattice", "compiler", "queue", "matrix", "sorting", "parser", "kernel", "cache",
         "network", "protocol", "index", "buffer", "thread", "graph", "vector", "memory")


def make_docs(path: Path, rows: int, tag: str) -> None:
    docs = [{"text": f"Document {tag}-{i}: " + " ".join(WORDS[(i + j) % len(WORDS)]
                                                       for j in range(40))}
            for i in range(rows)]
    write_records(path, docs)


def measure(servers: list[FaultServerProcess], actors: int, args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    for server in servers:
        server.reset()
    rows = args.rows_per_actor * actors
    make_docs(work / "docs.jsonl", rows, f"{actors}-{time.time_ns()}")
    urls = [s.chat_url for s in servers]
    runner = {"pool_size": actors, "num_cpus": args.actor_cpus, "api_urls": urls,
              "batch_size": args.batch_size}
    if args.address:
        runner["address"] = args.address
    pipeline = Pipeline([Step("Doc2Query", init={"max_attempts": 1})], serving="openai",
                        serving_options={"api_url": urls[0], "model_name": "bench",
                                         "max_workers": args.max_workers, "max_retries": 0,
                                         "timeout": 60},
                        runner="ray", runner_options=runner)
    assert pipeline.serving is not None
    pipeline.serving.use_cache(False)
    report = pipeline.run(work / "docs.jsonl", work / "out.jsonl", cache_path=work / "cache")
    logs = [s.stats()["log"] for s in servers]
    used = [log for log in logs if log]
    calls = sum(len(log) for log in used)
    first = min(e["served"] for log in used for e in log)
    last = max(e["t1"] for log in used for e in log)
    steady_from = max(min(e["served"] for e in log) for log in used)
    steady_to = min(max(e["t1"] for e in log) for log in used)
    steady_calls = sum(1 for log in used for e in log
                       if e["served"] >= steady_from and e["t1"] <= steady_to)
    ideal = len(servers) / args.latency
    failed = report.stages[0].stats.get("failed", 0)
    return {
        "actors": actors, "rows": rows, "calls": calls, "failed": failed,
        "endpoints_used": len(used),
        "overall": calls / (last - first) / ideal,
        "steady": (steady_calls / (steady_to - steady_from) / ideal
                   if steady_to > steady_from else float("nan")),
        "stage_seconds": report.stages[0].stats["seconds"],
        "rps": calls / (last - first),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--actors", default="1,2,4,8")
    parser.add_argument("--rows-per-actor", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4, help="rows per block")
    parser.add_argument("--max-workers", type=int, default=1, help="calls in flight per actor")
    parser.add_argument("--actor-cpus", type=float, default=0.25)
    parser.add_argument("--num-cpus", type=int, default=2,
                        help="logical CPUs of a Ray instance started here")
    parser.add_argument("--address", help="an existing Ray cluster")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RARE_CACHE_DIR", tempfile.mkdtemp(prefix="rare-bench-cache-"))

    import ray

    if args.address:
        ray.init(address=args.address, logging_level="ERROR")
    else:
        ray.init(num_cpus=args.num_cpus, object_store_memory=200 * 1024 * 1024,
                 include_dashboard=False, logging_level="ERROR")
    ideal = args.endpoints / args.latency
    print(f"{args.endpoints} endpoints, {args.latency * 1000:.0f} ms each, one request at a "
          f"time: ideal {ideal:.1f} requests/s; {args.batch_size} rows per block, "
          f"{args.max_workers} call(s) in flight per actor; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="rare-ray-bench-") as tmp:
        servers: list[FaultServerProcess] = []
        try:
            for n in range(args.endpoints):
                folder = Path(tmp) / f"server{n}"
                folder.mkdir()
                servers.append(FaultServerProcess(folder, delay=args.latency, concurrency=1,
                                                  max_seconds=3600))
            for actors in [int(a) for a in args.actors.split(",")]:
                work = Path(tmp) / f"run{actors}"
                work.mkdir()
                result = measure(servers, actors, args, work)
                results.append(result)
                print(f"{actors:>2} actors: {result['rows']:>4} rows, {result['rps']:6.1f} "
                      f"req/s; steady {result['steady']:.2f}, overall "
                      f"{result['overall']:.2f} of ideal; endpoints used "
                      f"{result['endpoints_used']}; stage {result['stage_seconds']:.1f} s "
                      f"(actor start-up included); failed rows {result['failed']}",
                      flush=True)
        finally:
            for server in servers:
                server.stop()
            ray.shutdown()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
