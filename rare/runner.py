"""The local runner: moves rows through operators, a batch at a time, owning every read and write.

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
from pathlib import Path
from typing import Any

from rare.formats import Records, RowWriter
from rare.report import RunReport, StageReport, error_kind, first_error, first_warning
from rare.settings import check_settings
from rare.step import StepContext, StepOperator
from rare.storage import FileStorage, Storage

log = logging.getLogger("rare")

#: rows per batch; LLM stages send a whole batch to the serving's executor at once
DEFAULT_BATCH_SIZE = 1024
BATCH_SIZE_ENV = "RARE_BATCH_SIZE"


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


def _checked(op: StepOperator, batches: Iterable[Records], ctx: StepContext) -> Iterator[Records]:
    """The batches with ``ctx.start`` kept up to date and the first one's columns checked."""
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
            batches: Iterable[Records] = _checked(op, storage.batches(step - 1, batch_size), ctx)
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
        checked = list(_checked(op, [rows] if rows else [], ctx))
        if op.needs_all_rows:
            op.prepare(checked, ctx)
        out = op.transform(rows, ctx) if rows else []
    finally:
        op.close()
    view.write(out)
    op.stats.update(rows_in=len(rows), rows_out=len(out))
    return op.stats


class LocalRunner:
    """Runs a :class:`rare.pipeline.Pipeline` in this process, streaming each step."""

    def __init__(self, batch_size: int | None = None) -> None:
        batch_size = batch_size or default_batch_size()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def run(self, pipeline: Any, storage: FileStorage, output_path: str | Path,
            on_stage: Callable[[StageReport], None] | None = None) -> RunReport:
        from rare.formats import format_of, iter_batches
        from rare.storage import remove_journals

        started = time.perf_counter()
        format_of(output_path)  # an unknown output format fails before any work
        row_failures: Counter[str] = Counter()
        row_warnings: Counter[str] = Counter()
        count = len(pipeline.steps)
        reports: list[StageReport] = []
        rows_in = rows_out = 0
        output = RowWriter(output_path)
        try:
            for n, (cls, step) in enumerate(zip(pipeline.classes, pipeline.steps), start=1):
                op = pipeline.build(cls, step)
                last = n == count
                if op.is_transform():
                    op.configure(**step.run)
                    sinks: list[Callable[[Records], None]] = []
                    if last:
                        sinks = [output.write, _failure_counter(row_failures, row_warnings)]
                    stats = run_step(op, storage, n, self.batch_size, sinks)
                else:
                    view = _view(storage, n)
                    op.run(view, **step.run)
                    stats = dict(getattr(op, "stats", {}) or {})
                    if last:  # its file is the only place its rows are
                        count_failures = _failure_counter(row_failures, row_warnings)
                        for batch in iter_batches(storage.path_for_step(n), self.batch_size):
                            output.write(batch)
                            count_failures(batch)
                if n == 1:
                    rows_in = int(stats.get("rows_in", 0))
                if last:
                    rows_out = output.rows
                report = StageReport(step.operator, stats, storage.location(n))
                reports.append(report)
                if on_stage is not None:
                    on_stage(report)
            output.commit()
        except BaseException:
            output.abort()
            raise
        # The run is complete: its journals have served their purpose.
        remove_journals(storage, range(1, count + 1))
        serving = pipeline.serving
        return RunReport(
            input=storage.location(0), output=str(output_path), rows_in=rows_in,
            rows_out=rows_out, failed_rows=sum(row_failures.values()), stages=reports,
            usage=dict(serving.usage) if serving else {},
            failures=dict(serving.failures) if serving else {},
            seconds=round(time.perf_counter() - started, 2),
            row_failures=row_failures, row_warnings=row_warnings,
        )


def _view(storage: FileStorage, step: int) -> FileStorage:
    """The reference's view for the operator that writes ``step``."""
    view = FileStorage(storage.first_entry_file_name, storage.cache_path,
                       storage.file_name_prefix, storage.cache_type)
    view.operator_step = step - 1
    return view


def _failure_counter(counter: Counter[str],
                     warnings: Counter[str] | None = None) -> Callable[[Records], None]:
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
