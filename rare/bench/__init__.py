"""``rare bench``: BM25 backends side by side, quality and agreement first, then speed.

For every backend (any registered retriever, by name; the references ``tantivy-py`` and
``bm25s`` only when named) and every thread count, a worker builds the index, times it,
then times batch search and batch hard-negative mining over the queries (median of
``repeat`` runs after a warm-up). Before any speed is printed, the result lists are
compared: nDCG@10, recall@k and MRR@10 against the qrels, and the top-10 overlap of every
pair of backends.

The rooms:

- :mod:`rare.bench.data`: reading the corpus, queries and qrels (:class:`DataSpec`,
  :func:`load_dataset`);
- :mod:`rare.bench.references`: the reference retrievers, a built-in plugin;
- :mod:`rare.bench.backends`: resolving and checking backend names;
- :mod:`rare.bench.worker`: one backend at one thread count, in its own process
  (``python -m rare.bench SPEC RESULT``);
- :mod:`rare.bench.report`: the JSON report and the printed tables;
- :mod:`rare.bench.chart`: the PNG chart;
- :mod:`rare.bench.runner`: :func:`run_bench`, which ties them up (settings: BenchConfig).

``run_bench(config)`` is the entry point (``in_process=True`` measures every backend in this
process: no per-backend memory figure, but retrievers registered in-process work). The names
below are imported on first use, so that loading the reference plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rare.bench.backends import check_backends, make_backend
    from rare.bench.chart import write_chart
    from rare.bench.data import (
        BenchConfig,
        Dataset,
        DataSpec,
        dataset_name,
        load_dataset,
        read_corpus,
        read_queries,
    )
    from rare.bench.report import build_report, print_mining_options, print_quality, print_speed
    from rare.bench.runner import BenchError, run_bench
    from rare.bench.worker import Job, measure

_EXPORTS = {
    "check_backends": "backends", "make_backend": "backends",
    "write_chart": "chart",
    "Dataset": "data", "DataSpec": "data", "dataset_name": "data", "load_dataset": "data",
    "read_corpus": "data", "read_queries": "data",
    "build_report": "report", "print_quality": "report", "print_speed": "report",
    "print_mining_options": "report",
    "BenchConfig": "data", "BenchError": "runner", "run_bench": "runner",
    "Job": "worker", "measure": "worker",
}

__all__ = [
    "BenchConfig", "BenchError", "DataSpec", "Dataset", "Job", "build_report", "check_backends",
    "dataset_name", "load_dataset", "make_backend", "measure", "print_mining_options",
    "print_quality", "print_speed",
    "read_corpus", "read_queries", "run_bench", "write_chart",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rare.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rare.bench.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
