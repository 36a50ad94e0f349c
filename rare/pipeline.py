"""A pipeline: operators by registered name with their settings, checked before any work.

``Pipeline(steps, serving=..., retriever=...)`` resolves every operator, retriever and
serving name and checks every setting against the component's signature in ``__init__``,
so a typo fails at once with the known keys; :meth:`Pipeline.run` then hands the steps to
a runner (:class:`rare.runner.LocalRunner`) that streams the rows through them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rare import plugins
from rare.errors import InputError, SettingsError
from rare.llm import LLMServing
from rare.operator import Operator
from rare.report import RunReport
from rare.settings import check_settings


@dataclass
class Step:
    """One operator of a pipeline: its registered name, constructor and run() settings."""

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


STEP_KEYS = ("operator", "init", "run")
CONFIG_SECTIONS = ("pipeline", "serving", "retriever", "steps")
PIPELINE_KEYS = ("input", "output", "cache_path", "cache_type", "text_key", "num_neg",
                 "no_cache", "response_cache", "batch_size", "language")


def check_config(config: dict[str, Any], source: str = "config") -> None:
    """Reject a TOML config's unknown sections and ``[pipeline]`` keys, naming the known ones."""
    for section in config:
        if section not in CONFIG_SECTIONS:
            raise SettingsError(f"{source}: unknown section [{section}]; known sections: "
                                f"{', '.join(CONFIG_SECTIONS)}")
    for key in config.get("pipeline", {}):
        if key not in PIPELINE_KEYS:
            raise SettingsError(f"{source}: unknown setting {key!r} in [pipeline]; known "
                                f"settings: {', '.join(PIPELINE_KEYS)}")


def steps_from_config(config: dict[str, Any]) -> list[Step]:
    raw = config.get("steps")
    if raw is None:
        pipe = config.get("pipeline", {})
        return rare_steps(pipe.get("text_key", "text"), pipe.get("num_neg", 3))
    steps = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict) or "operator" not in item:
            raise InputError(f"config: steps[{n}] needs an 'operator' name")
        unknown = [k for k in item if k not in STEP_KEYS]
        if unknown:
            raise SettingsError(f"config: steps[{n}] ({item['operator']}): unknown key "
                                f"{unknown[0]!r}; a step has: {', '.join(STEP_KEYS)}")
        steps.append(Step(item["operator"], dict(item.get("init", {})), dict(item.get("run", {}))))
    return steps


def _takes(cls: type, param: str) -> bool:
    try:
        return param in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _wants_llm(cls: type, step: Step) -> bool:
    """Whether a step needs the pipeline's serving: its constructor takes ``llm_serving``,
    unless the class's ``wants_llm(init)`` says its settings do not use it (BM25HardNeg
    takes one only to judge its negatives)."""
    if not _takes(cls, "llm_serving"):
        return False
    wants = getattr(cls, "wants_llm", None)
    return bool(wants(step.init)) if callable(wants) else True


class Pipeline:
    """Operators run one after another over a file.

    ``serving`` (an :class:`LLMServing`, or a registered name with ``serving_options``;
    default: the embedded model) is handed to every operator whose constructor takes
    ``llm_serving``; ``retriever`` (a name, with ``retriever_options``) to every one that
    takes ``retriever``. ``language`` (``"en"``, ``"zh"`` or ``"auto"``; None: each
    component's default) goes to every operator that takes ``language`` and has none in
    its step: the retriever's analyzers and the prompts' language. Every name and setting
    is checked here, before any work.
    """

    def __init__(self, steps: list[Step], serving: LLMServing | str | None = None,
                 retriever: str | None = None,
                 retriever_options: dict[str, Any] | None = None,
                 serving_options: dict[str, Any] | None = None,
                 batch_size: int | None = None, language: str | None = None) -> None:
        from rare.text import check_language

        self.language = None if language is None else check_language(language)
        self.steps = steps
        self.retriever = retriever
        self.retriever_options = dict(retriever_options or {})
        self.batch_size = batch_size
        self.classes: list[type[Operator]] = [plugins.get("operators", s.operator)
                                              for s in steps]
        for n, (cls, step) in enumerate(zip(self.classes, steps), start=1):
            self._check_step(n, cls, step)
        if self.retriever is not None or self.retriever_options:
            import rare.retrievers

            name = self.retriever or rare.retrievers.default_name()
            check_settings(plugins.get("retrievers", name), self.retriever_options,
                           component=f"retriever {name!r}", where="retriever options")
        self.serving: LLMServing | None = None
        if isinstance(serving, LLMServing):
            if serving_options:
                raise SettingsError("serving_options are for a serving given by name, not "
                                    "for a serving object")
            self.serving = serving
        elif self.needs_llm():
            import rare.serving

            self.serving = rare.serving.create(serving, **(serving_options or {}))

    def _check_step(self, n: int, cls: type[Operator], step: Step) -> None:
        component = f"operator {step.operator!r}"
        supplied = {"llm_serving"}
        check_settings(cls, step.init, component=component, where=f"step {n}, init",
                       supplied=supplied)
        if getattr(cls, "is_transform", lambda: False)():
            check_settings(cls, step.run, component=component, method="configure",
                           where=f"step {n}, run")
        else:  # an operator of the reference's style: its settings are run()'s parameters
            check_settings(cls.run, step.run, component=component, where=f"step {n}, run",
                           supplied={"storage"})

    def needs_llm(self) -> bool:
        return any(_wants_llm(c, s) for c, s in zip(self.classes, self.steps))

    def build(self, cls: type[Operator], step: Step) -> Operator:
        kwargs = dict(step.init)
        if _takes(cls, "llm_serving") and "llm_serving" not in kwargs:
            kwargs["llm_serving"] = self.serving
        if _takes(cls, "retriever") and self.retriever and "retriever" not in kwargs:
            kwargs["retriever"] = self.retriever
            if _takes(cls, "retriever_options"):
                kwargs.setdefault("retriever_options", self.retriever_options)
        elif (_takes(cls, "retriever_options") and self.retriever_options
              and "retriever_options" not in kwargs):
            kwargs["retriever_options"] = self.retriever_options
        if self.language is not None and _takes(cls, "language"):
            kwargs.setdefault("language", self.language)
        return cls(**kwargs)

    def run(self, input_path: str | Path, output_path: str | Path, cache_path: str | Path,
            cache_type: str = "jsonl", file_name_prefix: str = "rare_cache_step",
            on_stage: Any = None) -> RunReport:
        from rare.runner import LocalRunner
        from rare.storage import FileStorage

        storage = FileStorage(str(input_path), cache_path=str(cache_path),
                              file_name_prefix=file_name_prefix, cache_type=cache_type)
        runner = LocalRunner(self.batch_size)
        report: RunReport = runner.run(self, storage, output_path, on_stage=on_stage)
        return report
