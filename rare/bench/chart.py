"""The PNG chart of a ``rare bench`` report (needs matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_chart(report: dict[str, Any], path: Path) -> str:
    """Bars of mining and search queries/s per backend and thread count; what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("no chart: matplotlib is not installed "
                "(pip install 'rare-synth[bench]' or pip install matplotlib)")
    runs = [r for r in report["runs"] if "error" not in r]
    names = list(dict.fromkeys(r["backend"] for r in runs))
    threads = sorted({r["threads"] for r in runs})
    if not runs:
        return "no chart: no backend finished"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(threads))
    for ax, phase in zip(axes, ("mine", "search"), strict=True):
        for j, t in enumerate(threads):
            values = [next((r["qps"][phase] for r in runs
                            if r["backend"] == n and r["threads"] == t), 0) for n in names]
            xs = [i + (j - (len(threads) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(xs, values, width, label=f"{t} thread{'s' if t > 1 else ''}")
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("queries / s")
        ax.set_title(f"{'mining' if phase == 'mine' else 'batch search'} "
                     f"(top-{report['top_k']})")
        ax.legend(fontsize=8)
    machine = report["machine"]
    fig.suptitle(f"{report['dataset']}: {report['num_docs']:,} docs, {report['num_queries']:,} "
                 f"queries; {machine['usable_cpus']} cores, {report.get('date', '')}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"
