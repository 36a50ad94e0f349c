"""The local runner: moves rows through operators, a batch at a time, owning every read and write.

Runners are plugins (hook ``register_runners``); this module is a built-in plugin of the
core that registers :class:`LocalRunner` as ``local``, the default. A runner has one method,
:meth:`Runner.run`; its constructor's keyword parameters are its settings.

For each step it reads the previous step once, in batches, checks the operator's input
columns on the first batch, calls :meth:`Operator.transform` on each batch and writes the
result through an atomic writer, so no step's rows need to be in memory together. An
operator that must see every row first (``needs_all_rows``) gets them in
:meth:`Operator.prepare` during that same single read; the runner keeps the batches
meanwhile as compressed pickles (a fraction of the file's size) and replays them.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rare.formats import Records, RowWriter
from rare.hookspecs import Register, hookimpl
from rare.report import RunReport, StageReport, error_kind, first_error, first_warning
from rare.settings import check_settings
from rare.step import StepContext, StepOperator
from rare.storage import FileStorage, Storage

log = logging.getLogger("rare")

#: rows per batch; LLM stages send a whole batch to the serving's executor at once
DEFAULT_BATCH_SIZE = 1024
BATCH_SIZE_ENV = "RARE_BATCH_SIZE"


@runtime_checkable
class Runner(Protocol):
    """What :meth:`rare.pipeline.Pipeline.run` needs from a runner."""

    def run(self, pipeline: Any, storage: FileStorage, output_path: str | Path,
            on_stage: Callable[[StageReport], None] | None = None) -> RunReport:
        """Run every step of ``pipeline`` from ``storage``'s input to ``output_path``."""
        ...


def default_batch_size() -> int:
    """``$RARE_BATCH_SIZE`` when set, else :data:`DEFAULT_BATCH_SIZE`."""
    value = os.environ.get(BATCH_SIZE_ENV, "")
    try:
        return int(value) if value else DEFAULT_BATCH_SIZE
    except ValueError:
        raise ValueError(f"{BATCH_SIZE_ENV} must be a whole number, got {value!r}") from None


class _HeldBatches:
    """Batches kept compressed in memory between an operator's prepare() and transform()."""

    def __init__(self) -> None:
        self._blobs: list[bytes] = []

    def keep(self, batches: Iterable[Records]) -> Iterator[Records]:
        for batch in batches:
            self._blobs.append(zlib.compress(pickle.dumps(batch, protocol=5), 1))
            yield batch

    def replay(self) -> Iterator[Records]:
        while self._blobs:
            blob = self._blobs.pop(0)
            yield pickle.loads(zlib.decompress(blob))


def operator_name(op: StepOperator | type) -> str:
    cls = op if isinstance(op, type) else type(op)
    return cls.__name__


def checked_batches(op: StepOperator, batches: Iterable[Records],
                    ctx: StepContext) -> Iterator[Records]:
    """The batches with ``ctx.start`` kept up to date and the first one's columns checked
    (a missing input column fails; an output column that exists already is warned of)."""
    start = 0
    first = True
    for batch in batches:
        if first:
            op.require_columns(batch, op.input_columns(), ctx.source)
            op.warn_existing(batch, op.output_columns(), ctx.source)
            first = False
        ctx.start = start
        yield batch
        start += len(batch)
    if first:
        log.warning("%s: no rows to process; the step's output is empty too", ctx.source)


def run_step(op: StepOperator, storage: Storage, step: int,
             batch_size: int = DEFAULT_BATCH_SIZE,
             sinks: Iterable[Callable[[Records], None]] = ()) -> dict[str, Any]:
    """Run a configured transform operator from ``step - 1`` to ``step``; return its stats.

    Every output batch is also handed to each of ``sinks`` (the pipeline's output file, its
    row-failure count) so that no step has to be read back.
    """
    started = time.perf_counter()
    ctx = StepContext(source=storage.location(step - 1),
                      opener=lambda: storage.journal(step))
    sinks = list(sinks)
    rows_in = rows_out = 0
    op.open(ctx)
    try:
        writer: RowWriter = storage.writer(step)
        with writer:
            batches: Iterable[Records] = checked_batches(
                op, storage.batches(step - 1, batch_size), ctx)
            if op.needs_all_rows:
                held = _HeldBatches()
                op.prepare(held.keep(batches), ctx)
                batches = _restarted(held.replay(), ctx)
            for batch in batches:
                rows_in += len(batch)
                out = op.transform(batch, ctx)
                rows_out += len(out)
                writer.write(out)
                for sink in sinks:
                    sink(out)
    finally:
        ctx.close()
        op.close()
    stats = dict(op.stats)
    stats.update(rows_in=rows_in, rows_out=rows_out,
                 seconds=round(time.perf_counter() - started, 3))
    stats.setdefault("failed", 0)
    op.stats = stats
    return stats


def _restarted(batches: Iterable[Records], ctx: StepContext) -> Iterator[Records]:
    start = 0
    for batch in batches:
        ctx.start = start
        yield batch
        start += len(batch)


def run_operator(op: StepOperator, view: Any, settings: dict[str, Any],
                 batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
    """The reference API's ``op.run(storage=view, **settings)`` on the runner's code path."""
    check_settings(type(op), settings, component=f"operator {operator_name(op)}",
                   method="configure", where="run() settings")
    op.configure(**settings)
    if isinstance(view, FileStorage):
        return run_step(op, view, view.read_step + 1, batch_size)
    # Any object with the reference's read()/write() (a storage of the user's own).
    rows = view.read("dict")
    ctx = StepContext(source=str(getattr(view, "read_path", "input")))
    op.open(ctx)
    try:
        checked = list(checked_batches(op, [rows] if rows else [], ctx))
        if op.needs_all_rows:
            op.prepare(checked, ctx)
        out = op.transform(rows, ctx) if rows else []
    finally:
        op.close()
    view.write(out)
    op.stats.update(rows_in=len(rows), rows_out=len(out))
    return op.stats


class LocalRunner:
    """Runs a :class:`rare.pipeline.Pipeline` in this process, streaming each step.

    ``batch_size``: rows read, transformed and written at a time (default:
    ``$RARE_BATCH_SIZE``, else 1024).
    """

    def __init__(self, batch_size: int | None = None) -> None:
        batch_size = batch_size or default_batch_size()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def run(self, pipeline: Any, storage: FileStorage, output_path: str | Path,
            on_stage: Callable[[StageReport], None] | None = None) -> RunReport:
        from rare.formats import format_of
        from rare.storage import remove_journals

        started = time.perf_counter()
        format_of(output_path)  # an unknown output format fails before any work

        def transform(n: int, step: Any, op: StepOperator,
                      sinks: list[Callable[[Records], None]]) -> dict[str, Any]:
            return run_step(op, storage, n, self.batch_size, sinks)

        done = run_steps(pipeline, storage, output_path, transform, self.batch_size, on_stage)
        # The run is complete: its journals have served their purpose.
        remove_journals(storage, range(1, len(pipeline.steps) + 1))
        serving = pipeline.serving
        return done.report(storage, output_path, started,
                           usage=dict(serving.usage) if serving else {},
                           failures=dict(serving.failures) if serving else {})


@dataclass
class StepsDone:
    """What :func:`run_steps` saw of a pipeline's run."""

    stages: list[StageReport]
    rows_in: int
    rows_out: int
    row_failures: Counter[str]
    row_warnings: Counter[str]

    def report(self, storage: FileStorage, output_path: str | Path, started: float,
               usage: dict[str, int], failures: dict[str, int]) -> RunReport:
        """The run's report; ``started`` is its ``time.perf_counter()`` at the start."""
        return RunReport(
            input=storage.location(0), output=str(output_path), rows_in=self.rows_in,
            rows_out=self.rows_out, failed_rows=sum(self.row_failures.values()),
            stages=self.stages, usage=usage, failures=failures,
            seconds=round(time.perf_counter() - started, 2),
            row_failures=self.row_failures, row_warnings=self.row_warnings,
        )


#: how a runner runs one configured transform step: (step number, the pipeline's step,
#: the operator, the sinks of its output batches) -> the step's stats
TransformStep = Callable[[int, Any, StepOperator, list[Callable[[Records], None]]],
                         dict[str, Any]]


def run_steps(pipeline: Any, storage: FileStorage, output_path: str | Path,
              transform: TransformStep, batch_size: int = DEFAULT_BATCH_SIZE,
              on_stage: Callable[[StageReport], None] | None = None) -> StepsDone:
    """Every step of ``pipeline`` in turn, the last one's rows into ``output_path`` (written
    atomically: nothing there unless the whole run finishes). A transform step runs
    through ``transform`` (where runners differ); a step of the reference's style (its own
    ``run()`` does the I/O) runs here. The last step's rows are counted by their first
    ``*_error`` and ``*_warning`` as they go out."""
    row_failures: Counter[str] = Counter()
    row_warnings: Counter[str] = Counter()
    count = len(pipeline.steps)
    stages: list[StageReport] = []
    rows_in = rows_out = 0
    output = RowWriter(output_path)
    try:
        for n, (cls, step) in enumerate(zip(pipeline.classes, pipeline.steps), start=1):
            op = pipeline.build(cls, step)
            last = n == count
            sinks: list[Callable[[Records], None]] = []
            if last:
                sinks = [output.write, failure_counter(row_failures, row_warnings)]
            if op.is_transform():
                op.configure(**step.run)
                stats = transform(n, step, op, sinks)
            else:
                stats = run_reference_step(op, storage, n, step.run, batch_size, sinks)
            if n == 1:
                rows_in = int(stats.get("rows_in", 0))
            if last:
                rows_out = output.rows
            report = StageReport(step.operator, stats, storage.location(n))
            stages.append(report)
            if on_stage is not None:
                on_stage(report)
        output.commit()
    except BaseException:
        output.abort()
        raise
    return StepsDone(stages, rows_in, rows_out, row_failures, row_warnings)


def run_reference_step(op: Any, storage: FileStorage, step: int, settings: dict[str, Any],
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       sinks: Iterable[Callable[[Records], None]] = ()) -> dict[str, Any]:
    """Run an operator of the reference's style (its own ``run()`` reads and writes) for
    ``step``; its output is then read once for ``sinks``. Returns its stats."""
    from rare.formats import iter_batches

    op.run(_view(storage, step), **settings)
    stats = dict(getattr(op, "stats", {}) or {})
    sinks = list(sinks)
    if sinks:  # its file is the only place its rows are
        for batch in iter_batches(storage.path_for_step(step), batch_size):
            for sink in sinks:
                sink(batch)
    return stats


def _view(storage: FileStorage, step: int) -> FileStorage:
    """The reference's view for the operator that writes ``step``."""
    view = FileStorage(storage.first_entry_file_name, storage.cache_path,
                       storage.file_name_prefix, storage.cache_type)
    view.operator_step = step - 1
    return view


def failure_counter(counter: Counter[str],
                    warnings: Counter[str] | None = None) -> Callable[[Records], None]:
    """A sink that counts the rows that carry an ``*_error`` by the error's kind (and, in
    ``warnings``, those that carry only a ``*_warning``)."""

    def count(rows: Records) -> None:
        for row in rows:
            error = first_error(row)
            if error is not None:
                counter[error_kind(error)] += 1
            elif warnings is not None:
                warning = first_warning(row)
                if warning is not None:
                    warnings[error_kind(warning)] += 1

    return count


@hookimpl
def register_runners(register: Register) -> None:
    register(LocalRunner, name="local")
