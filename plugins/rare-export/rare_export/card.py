"""The dataset card (README.md) of an ``hf`` export: what the data is and how it was made."""

from __future__ import annotations

import json
from typing import Any

from rare.export import ExportContext


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    return lines


def dataset_card(ctx: ExportContext, columns: list[str]) -> str:
    """Markdown with a YAML header: source, teacher, settings, counts, failures, columns."""
    info = ctx.run_info
    report = info.get("report") or {}
    teacher = info.get("teacher") or {}
    counts = ctx.counts
    splits = counts.get("splits") or {}
    lines = [
        "---",
        "tags:", "- rare-synth", "- reasoning", "- retrieval-augmented",
        "task_categories:", "- text-generation",
        "---", "",
        f"# {ctx.name}", "",
        "Retrieval-augmented reasoning data made with rare-synth (RARE: a question and a "
        "scenario per document, BM25 hard negatives, and a teacher's step-by-step reasoning "
        "over the document hidden among them). Load it with "
        f"`datasets.load_from_disk(\"{(ctx.target or ctx.out).name}\")`.", "",
        "## Source", "",
        *_table([("run output", ctx.source.name), ("run input", info.get("input", "?")),
                 ("made", info.get("created", "?")),
                 ("rare-synth", info.get("rare_version", "?"))]), "",
        "## Teacher", "",
        *_table([("model", teacher.get("model", "unknown")),
                 ("serving", teacher.get("class", "unknown"))]
                + [(f"`{k}`", v) for k, v in sorted((teacher.get("settings") or {}).items())]),
        "",
        "## Settings", "",
        f"Retriever: `{info.get('retriever') or 'default'}`"
        f" {json.dumps(info.get('retriever_options') or {})}", "",
    ]
    for step in info.get("steps") or []:
        lines.append(f"- **{step.get('operator')}**: init `{json.dumps(step.get('init'))}`, "
                     f"run `{json.dumps(step.get('run'))}`")
    if not info.get("steps"):
        lines.append("(the run's settings were not found: no `.run.json` beside its output)")
    lines += ["", "## Counts", ""]
    rows = [("rows in the run", counts.get("rows")), ("rows kept", counts.get("kept"))]
    rows += [(f"split `{k}`", v) for k, v in splits.items()]
    rows += [(f"left out: {k}", v) for k, v in (counts.get("left_out") or {}).items()]
    if ctx.include_failed:
        rows.append(("failed and ungrounded rows", "kept (--include-failed)"))
    for stage in report.get("stages") or []:
        stats = stage.get("stats") or {}
        if stats.get("judged"):
            rows.append((f"{stage.get('name')}: grounded replies",
                         f"{stats.get('grounded', 0)} of {stats['judged']}, "
                         f"{stats.get('samples', 0)} samples asked"))
    usage = report.get("usage") or {}
    if usage:
        rows.append(("LLM calls", usage.get("calls", 0)))
        rows.append(("tokens (prompt + completion)",
                     usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)))
    lines += _table(rows)
    failures = report.get("row_failures") or {}
    warnings = report.get("row_warnings") or {}
    if failures or warnings:
        lines += ["", "## Failures in the run", ""]
        lines += [f"- failed, {k}: {v}" for k, v in failures.items()]
        lines += [f"- warning, {k}: {v}" for k, v in warnings.items()]
    lines += ["", "## Columns", "", ", ".join(f"`{c}`" for c in columns), "",
              "`messages` is the conversation the teacher had (system, user with the documents "
              "in the order it saw them, assistant with its reasoning); "
              "`reasoning_grounded` says whether the final answer cites the positive "
              "(`reasoning_positive_label`).", ""]
    return "\n".join(lines)
