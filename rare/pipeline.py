"""Run a list of operators over a file: the engine behind ``rare run``."""

from __future__ import annotations

import inspect
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rare import plugins
from rare.errors import InputError
from rare.llm import LLMServing
from rare.storage import FileStorage, read_records, write_records


@dataclass
class Step:
    """One operator of a pipeline: its registered name, constructor and run() arguments."""

    operator: str
    init: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


def rare_steps(text_key: str = "text", num_neg: int = 3) -> list[Step]:
    """The three RARE stages with the design's column names."""
    return [
        Step("Doc2Query", run={"input_key": text_key}),
        Step("BM25HardNeg", run={"input_text_key": text_key, "num_neg": num_neg}),
        Step("ReasonDistill", run={"input_text_key": text_key}),
    ]


def steps_from_config(config: dict[str, Any]) -> list[Step]:
    raw = config.get("steps")
    if raw is None:
        pipe = config.get("pipeline", {})
        return rare_steps(pipe.get("text_key", "text"), pipe.get("num_neg", 3))
    steps = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict) or "operator" not in item:
            raise InputError(f"config: steps[{n}] needs an 'operator' name")
        steps.append(Step(item["operator"], dict(item.get("init", {})), dict(item.get("run", {}))))
    return steps


@dataclass
class StageReport:
    name: str
    stats: dict[str, Any]
    output: str


@dataclass
class RunReport:
    input: str
    output: str
    rows_in: int
    rows_out: int
    failed_rows: int
    stages: list[StageReport]
    usage: dict[str, int]
    failures: dict[str, int]
    seconds: float
    row_failures: Counter[str] = field(default_factory=Counter)


def first_error(row: dict[str, Any]) -> str | None:
    """The first ``*_error`` a row carries, None when it has none."""
    return next((v for k, v in row.items() if k.endswith("_error") and v is not None), None)


def error_kind(error: str) -> str:
    """The reason's kind: the text before its first colon ("skipped", "unusable reply", ...)."""
    return error.split(":", 1)[0].strip()


class Pipeline:
    """Operators run one after another through a :class:`FileStorage`.

    ``serving`` is handed to every operator whose constructor takes ``llm_serving``, and
    ``retriever`` (a name) to every one that takes ``retriever``.
    """

    def __init__(self, steps: list[Step], serving: LLMServing | None = None,
                 retriever: str | None = None,
                 retriever_options: dict[str, Any] | None = None) -> None:
        self.steps = steps
        self.serving = serving
        self.retriever = retriever
        self.retriever_options = retriever_options or {}
        # Resolve every name before any work is done: a typo fails at once.
        self.classes = [plugins.get("operators", s.operator) for s in steps]

    def needs_llm(self) -> bool:
        return any("llm_serving" in inspect.signature(c).parameters for c in self.classes)

    def build(self, cls: type, step: Step) -> Any:
        params = inspect.signature(cls).parameters
        kwargs = dict(step.init)
        if "llm_serving" in params and "llm_serving" not in kwargs:
            if self.serving is None:
                import rare.serving

                self.serving = rare.serving.create()
            kwargs["llm_serving"] = self.serving
        if "retriever" in params and self.retriever and "retriever" not in kwargs:
            kwargs["retriever"] = self.retriever
            if "retriever_options" in params:
                kwargs.setdefault("retriever_options", self.retriever_options)
        return cls(**kwargs)

    def run(self, input_path: str | Path, output_path: str | Path, cache_path: str | Path,
            cache_type: str = "jsonl", file_name_prefix: str = "rare_cache_step",
            on_stage: Any = None) -> RunReport:
        start = time.perf_counter()
        rows_in = len(read_records(input_path))
        storage = FileStorage(str(input_path), cache_path=str(cache_path),
                              file_name_prefix=file_name_prefix, cache_type=cache_type)
        reports = []
        for cls, step in zip(self.classes, self.steps):
            operator = self.build(cls, step)
            view = storage.step()
            operator.run(view, **step.run)
            report = StageReport(step.operator, dict(getattr(operator, "stats", {}) or {}),
                                 str(view.write_path))
            reports.append(report)
            if on_stage is not None:
                on_stage(report)
        final = read_records(storage.path_for_step(len(self.steps)))
        write_records(output_path, final)
        # The run is complete: its journals have served their purpose.
        for k in range(1, len(self.steps) + 1):
            path = storage.path_for_step(k)
            path.with_name(path.name + ".journal").unlink(missing_ok=True)
        errors = [e for e in map(first_error, final) if e is not None]
        serving = self.serving
        return RunReport(
            input=str(input_path), output=str(output_path), rows_in=rows_in,
            rows_out=len(final), failed_rows=len(errors), stages=reports,
            usage=dict(serving.usage) if serving else {},
            failures=dict(serving.failures) if serving else {},
            seconds=round(time.perf_counter() - start, 2),
            row_failures=Counter(map(error_kind, errors)),
        )
