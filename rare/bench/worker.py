"""One backend at one thread count: build, search and mine over a dataset, timed.

:func:`run_worker` runs :func:`measure` in a fresh ``python -m rare.bench SPEC RESULT``
process (:func:`worker_main`), so its peak RSS is its own. The worker is restricted to
``threads`` cores (``sched_setaffinity``, so index builds that use "all cores" use that many
too), gets the thread-count variables (:data:`THREAD_VARS`) set to ``threads``, and passes
``threads`` to search and mining. SPEC is ``{"job": Job fields, "data": DataSpec fields}``;
RESULT gets the JSON of :func:`measure`, plus ``timing.load_s`` and ``cpus_used``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rare.bench.backends import make_backend
from rare.bench.data import Dataset, DataSpec, load_dataset
from rare.errors import RareError

THREAD_VARS = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB.

    Linux's VmHWM counts from this process's own start; ``ru_maxrss`` (the fallback) would
    also count the RSS its parent had when it forked the worker.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes there, KiB here


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(repeat: int, call: Callable[[], Any]) -> tuple[float, float, Any]:
    """Median wall and CPU seconds (every thread of the process) of ``repeat`` calls."""
    walls, cpus, result = [], [], None
    for _ in range(max(1, repeat)):
        cpu, start = cpu_seconds(), time.perf_counter()
        result = call()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


@dataclass
class Job:
    backend: str
    threads: int
    k: int = 100
    k1: float = 1.2
    b: float = 0.75
    num_neg: int = 3
    repeat: int = 3
    batch: int = 50_000  # documents per index() call
    language: str = "en"
    negatives: bool = True  # time the mining options; measure false negatives


def mining_options(retriever: Any, job: Job, data: Dataset) -> dict[str, Any]:
    """Mining speed under each of :data:`rare.bench.negatives.DEFAULT_VARIANTS` (the
    retriever's default depth, so the rows compare), and negative quality where the qrels
    give queries two or more relevant documents."""
    from rare.bench.negatives import DEFAULT_VARIANTS, make_pairs, measure_negatives

    n = len(data.queries)
    speed: dict[str, dict[str, Any]] = {}
    usable = []
    for variant in DEFAULT_VARIANTS:
        settings = variant.mine_settings()

        def mine(settings: dict[str, Any] = settings) -> Any:
            return retriever.mine(data.queries, data.positives, job.num_neg,
                                  threads=job.threads, **settings)

        try:
            seconds, cpu, result = timed(job.repeat, mine)
        except RareError as exc:  # e.g. a margin on a backend that cannot score a text
            speed[variant.name] = {"settings": variant.describe(), "error": str(exc)}
            continue
        usable.append(variant)
        speed[variant.name] = {"settings": variant.describe(), "mine_s": seconds,
                               "mine_cpu_s": cpu, "qps": n / seconds if seconds else None,
                               "shortfall": sum(result.shortfall),
                               "skipped": dict(result.skipped)}
    out: dict[str, Any] = {"mining_options": speed}
    pairs = make_pairs(dict(zip(data.qids, data.queries)), data.qrels or {})
    if len(pairs):
        rows = measure_negatives(retriever, pairs, usable, job.num_neg, job.threads)
        out["negatives"] = {"pairs": len(pairs), "queries": pairs.num_queries,
                            "variants": [r.as_dict() for r in rows]}
    return out


def measure(job: Job, data: Dataset) -> dict[str, Any]:
    """Build one backend's index over ``data`` and time build, search and mining."""
    baseline = peak_rss_mb()
    ids, texts, queries = data.ids, data.texts, data.queries
    retriever = make_backend(job.backend, job.threads, job.k1, job.b, job.language)

    def build() -> None:
        for at in range(0, len(ids), job.batch):
            retriever.index(ids[at:at + job.batch], texts[at:at + job.batch])
        retriever.commit()

    try:
        build_s, build_cpu_s, _ = timed(1, build)
        indexed = len(retriever)
        analyzer = retriever.analyzer_name
        language = retriever.language
        # Warm-up, untimed: the JVM compiles its hot paths, caches fill.
        retriever.search_batch(queries[:1000], job.k, threads=job.threads)
        search_s, search_cpu_s, hits = timed(
            job.repeat, lambda: retriever.search_batch(queries, job.k, threads=job.threads))
        mine_s, mine_cpu_s, mined = timed(job.repeat, lambda: retriever.mine(
            queries, data.positives, job.num_neg, threads=job.threads, depth=job.k))
        extra = mining_options(retriever, job, data) if job.negatives else {}
    finally:
        close = getattr(retriever, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    n = len(queries)
    return {
        "backend": job.backend, "threads": job.threads, "num_indexed": indexed,
        "language": language, "analyzer": analyzer,
        "timing": {"build_s": build_s, "build_cpu_s": build_cpu_s,
                   "search_s": search_s, "search_cpu_s": search_cpu_s,
                   "mine_s": mine_s, "mine_cpu_s": mine_cpu_s},
        "qps": {"search": n / search_s if search_s else None,
                "mine": n / mine_s if mine_s else None},
        "cpu_ms_per_query": {"search": 1000 * search_cpu_s / n, "mine": 1000 * mine_cpu_s / n},
        "baseline_memory_mb": baseline, "peak_memory_mb": peak_rss_mb(),
        "shortfall": sum(mined.shortfall),
        "run": [[doc for doc, _ in query_hits] for query_hits in hits],
        "top10_scores": [[score for _, score in query_hits[:10]] for query_hits in hits],
        **extra,
    }


def pin_threads(threads: int) -> list[int] | None:
    """Restrict this process to ``threads`` cores (where the OS allows); the cores used."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if threads < len(cores):
        cores = cores[:threads]
        os.sched_setaffinity(0, cores)
    return cores


def worker_main(argv: Sequence[str]) -> int:
    """``python -m rare.bench SPEC RESULT``: run one job of SPEC, write its JSON to RESULT."""
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    job = Job(**spec["job"])
    cores = pin_threads(job.threads)
    start = time.perf_counter()
    data = load_dataset(DataSpec(**spec["data"]))
    load_s = time.perf_counter() - start
    result = measure(job, data)
    result["timing"]["load_s"] = load_s
    result["cpus_used"] = cores
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_worker(job: Job, spec: DataSpec, timeout: float) -> dict[str, Any]:
    """:func:`measure` in a fresh process with thread counts pinned; errors come back as
    ``{"error": ...}``."""
    env = {**os.environ, **{var: str(job.threads) for var in THREAD_VARS}}
    with tempfile.TemporaryDirectory(prefix="rare-bench-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps({"job": asdict(job), "data": asdict(spec)}))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "rare.bench", str(spec_path), str(result_path)],
                env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish within {timeout:.0f} s"}
        if proc.returncode != 0 or not result_path.exists():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return {"error": f"exit status {proc.returncode}: "
                             f"{lines[-1] if lines else 'no output'}",
                    "stderr": proc.stderr[-4000:]}
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        return result

