"""What a run was: its settings and report, kept beside its output as ``<output>.run.json``.

``rare run`` and ``rare demo`` write it; ``rare export`` puts it in a dataset card and
``rare view`` in its summary. It never holds a secret: servings' settings are what goes into
cache keys (model, temperature, ...), never an API key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

SUFFIX = ".run.json"


def info_path(output: str | Path) -> Path:
    """Where the run information of ``output`` lives."""
    return Path(str(output) + SUFFIX)


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (objects become their repr)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_plain(v) for v in value]
        return repr(value)


def run_info(pipeline: Any, report: Any) -> dict[str, Any]:
    """The settings of ``pipeline`` (a :class:`rare.pipeline.Pipeline`) and its ``report``."""
    from rare import __version__

    serving = pipeline.serving
    teacher = None
    if serving is not None:
        settings = {k: v for k, v in serving.settings().items() if "key" not in k.lower()}
        teacher = {"class": type(serving).__name__, "model": serving.model_name,
                   "settings": _plain(settings)}
    return {
        "rare_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": report.input,
        "output": report.output,
        "teacher": teacher,
        "retriever": pipeline.retriever, "retriever_options": _plain(pipeline.retriever_options),
        "steps": [{"operator": s.operator, "init": _plain(s.init), "run": _plain(s.run)}
                  for s in pipeline.steps],
        "report": {
            "rows_in": report.rows_in, "rows_out": report.rows_out,
            "failed_rows": report.failed_rows, "row_failures": dict(report.row_failures),
            "row_warnings": dict(report.row_warnings), "usage": dict(report.usage),
            "failed_calls": dict(report.failures), "seconds": report.seconds,
            "stages": [{"name": s.name, "stats": _plain(s.stats)} for s in report.stages],
        },
    }


def write_run_info(pipeline: Any, report: Any) -> Path:
    path = info_path(report.output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run_info(pipeline, report), indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return path


def read_run_info(output: str | Path) -> dict[str, Any]:
    """The run information beside ``output``; {} when there is none (or it is unreadable)."""
    path = info_path(output)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
