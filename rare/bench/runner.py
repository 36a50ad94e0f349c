"""The whole benchmark: check the settings, load the data once, run every backend at every
thread count (a worker process each, or in this process), then report and chart."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rare.bench.backends import check_backends, check_languages
from rare.bench.chart import write_chart
from rare.bench.data import BenchConfig, load_dataset
from rare.bench.report import (
    build_report,
    load_average,
    print_mining_options,
    print_quality,
    print_speed,
)
from rare.bench.worker import Job, measure, run_worker
from rare.errors import RareError
from rare.text import check_language


class BenchError(RareError):
    """A benchmark could not run, or a backend failed during it."""


def run_bench(config: BenchConfig, echo: Callable[[str], None] = print,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the quality/agreement table, then the speed table; write the
    JSON report (and a PNG chart when matplotlib is installed) under ``config.out``.

    Returns the report. Raises :class:`BenchError` after writing it when a backend failed.
    """
    if progress is None:
        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    names = list(dict.fromkeys(config.backends + config.references))
    if not names:
        raise BenchError("no backend to benchmark: give --backends (or --reference)")
    if not config.threads or min(config.threads) < 1:
        raise BenchError(f"thread counts must be >= 1, got {config.threads}")
    if config.k < 10:
        raise BenchError(f"k must be >= 10 (top-10 overlap is compared), got {config.k}")
    check_backends(names)
    check_language(config.language, "--language")
    check_languages(names, config.language)
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    load_before = load_average()
    start = time.perf_counter()
    data = load_dataset(config.data)
    progress(f"rare bench: {data.name}: {len(data.ids):,} documents, {len(data.queries):,} "
             f"queries ({data.judged:,} judged), loaded in {time.perf_counter() - start:.1f} s")
    if not config.in_process:
        data.texts = []  # the workers load their own copy; this one only checked the input
    jobs = [Job(name, t, config.k, config.k1, config.b, config.num_neg, config.repeat,
                language=config.language, negatives=config.negatives)
            for t in config.threads for name in names]  # interleaved: load drifts alike
    results: list[dict[str, Any]] = []
    for i, job in enumerate(jobs, 1):
        progress(f"[{i}/{len(jobs)}] {job.backend}, threads={job.threads} ...")
        begun = time.perf_counter()
        if config.in_process:
            try:
                result = measure(job, data)
            except Exception as exc:  # reported with the others, as in a worker
                result = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                result["peak_memory_mb"] = result["baseline_memory_mb"] = None
        else:
            result = run_worker(job, config.data, config.timeout)
        result.update(backend=job.backend, threads=job.threads)
        results.append(result)
        status = "failed: " + result["error"] if "error" in result else "done"
        progress(f"[{i}/{len(jobs)}] {job.backend}, threads={job.threads} {status} "
                 f"({time.perf_counter() - begun:.0f} s)")
    report = build_report(config, data, results, names)
    report["date"] = started.isoformat(timespec="seconds")
    report["machine"]["load_average_before"] = load_before
    report["machine"]["load_average_after"] = load_average()
    print_quality(report, echo)
    print_speed(report, echo)
    print_mining_options(report, echo)
    if config.out:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{data.name}-{started.strftime('%Y%m%d-%H%M%S')}"
        json_path = out / f"{stem}.json"
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        report["files"] = {"json": str(json_path)}
        echo(f"\nwrote {json_path}")
        chart = write_chart(report, out / f"{stem}.png")
        if chart.startswith("wrote "):
            report["files"]["png"] = str(out / f"{stem}.png")
        echo(chart)
    failed = [r for r in results if "error" in r]
    if failed:
        raise BenchError("; ".join(f"{r['backend']} (threads={r['threads']}) failed: "
                                   f"{r['error']}" for r in failed))
    return report

