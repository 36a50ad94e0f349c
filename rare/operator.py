"""The operator base class: declared columns, per-run settings, and a transform of rows.

An operator does no file I/O. It states the columns it reads and writes, takes its per-run
settings in :meth:`Operator.configure`, and turns a batch of rows into a batch of rows in
:meth:`Operator.transform`; a runner reads each step once, hands the batches over and
writes the result (see :mod:`rare.runner`). Rows are records (a list of dicts): they stream
with no conversion, carry nested values (lists of negatives, verdicts) as they are, and a
row that failed is marked in place, row by row.

The reference API, ``op.run(storage=storage.step(), **settings)``, is a thin wrapper over
the same code. An older operator that overrides :meth:`run` and does its own I/O (the
reference's style) keeps working unchanged: runners call its ``run()``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rare.errors import InputError
from rare.step import StepContext

if TYPE_CHECKING:
    from rare.formats import Records

log = logging.getLogger("rare")


class Operator:
    """One pipeline stage.

    Subclasses implement :meth:`configure` (explicit keyword settings, stored on the
    instance), :meth:`input_columns`, :meth:`output_columns` and :meth:`transform`;
    :meth:`prepare` too when they must see every row before transforming any
    (``needs_all_rows = True``, as BM25HardNeg does to index the corpus). An operator that
    calls an LLM takes it as the constructor's first argument, ``llm_serving``.
    After a run, :attr:`stats` says what happened (rows in, rows out, failures, tokens).
    """

    #: True when :meth:`prepare` must see every row before the first :meth:`transform`
    needs_all_rows: bool = False

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}

    # -- what an operator implements --------------------------------------------------------
    def configure(self) -> None:
        """Take this run's settings (keyword parameters of the subclass's override)."""

    def input_columns(self) -> list[str]:
        """Columns every input row must have (checked on the step's first batch)."""
        return []

    def output_columns(self) -> list[str]:
        """Columns this operator adds or overwrites."""
        return []

    def open(self, ctx: StepContext) -> None:
        """Called once before the first batch; resets :attr:`stats`."""
        self.stats = {"rows_in": 0, "rows_out": 0, "failed": 0}

    def prepare(self, batches: Iterable[Records], ctx: StepContext) -> None:
        """See every row once before :meth:`transform` (only when ``needs_all_rows``)."""
        for _ in batches:
            pass

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        """Return the rows with this operator's columns filled in (may modify ``rows``)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither transform() "
                                  "nor run()")

    def close(self) -> None:
        """Called once after the last batch, also when the step failed: release resources."""

    def calls_llm(self) -> bool:
        """Whether :meth:`transform` calls the LLM serving (a runner that spreads steps over
        workers gives such a step workers that each hold a serving). The default: whether
        the constructor takes ``llm_serving``."""
        try:
            return "llm_serving" in inspect.signature(type(self)).parameters
        except (TypeError, ValueError):
            return False

    def share_prepared(self, directory: Path) -> dict[str, Any] | None:
        """For a runner that transforms on other processes: share what :meth:`prepare` builds.

        Called before :meth:`open`, only when ``needs_all_rows``. An operator that can keep
        what :meth:`prepare` builds in ``directory`` (an empty folder every worker can read)
        arranges for that and returns constructor settings with which a fresh copy of it,
        built elsewhere and never prepared, transforms every batch as this one would once
        prepared and closed. The default, None, says it cannot: the runner then transforms
        in its own process.
        """
        return None

    # -- the reference API --------------------------------------------------------------
    def run(self, storage: Any, **settings: Any) -> list[str]:
        """Configure with ``settings``, then read ``storage``'s step, transform, write the next.

        ``storage`` is a view from :meth:`rare.FileStorage.step`. Returns the output columns.
        """
        from rare.runner import run_operator

        run_operator(self, storage, settings)
        return self.output_columns()

    @classmethod
    def is_transform(cls) -> bool:
        """True for operators built on :meth:`transform`; False for run()-only ones."""
        return cls.transform is not Operator.transform or cls.run is Operator.run

    # -- helpers for subclasses ------------------------------------------------------------
    @staticmethod
    def require_columns(rows: Any, keys: Sequence[str], source: Any) -> None:
        """Fail, naming the file and the field, when a needed column is absent.

        ``rows`` is a DataFrame (its columns are checked) or records (the first row is).
        """
        if hasattr(rows, "columns"):
            have = list(map(str, rows.columns))
        else:
            have = list(rows[0]) if rows else []
        missing = [k for k in dict.fromkeys(keys) if k not in have]
        if missing:
            raise InputError(
                f"{source}: missing field(s) {', '.join(map(repr, missing))}; "
                f"the rows have: {', '.join(have) or 'none'}"
            )

    @staticmethod
    def text_values(rows: Records, key: str, ctx: StepContext) -> tuple[
            list[str | None], dict[int, str]]:
        """The field as strings, and a reason for every row that has no usable text.

        Empty, whitespace-only, missing and non-text cells give None plus a reason naming
        the file, row (its index in the step) and field; the caller marks those rows and
        goes on with the rest.
        """
        values: list[str | None] = []
        problems: dict[int, str] = {}
        for i, row in enumerate(rows):
            value = row.get(key)
            if isinstance(value, str) and value.strip():
                values.append(value)
                continue
            values.append(None)
            where = f"{ctx.source}: row {ctx.start + i}: field {key!r}"
            if value is None or (isinstance(value, float) and math.isnan(value)):
                problems[i] = f"{where} is missing"
            elif isinstance(value, str):
                problems[i] = f"{where} is empty"
            else:
                problems[i] = (f"{where} must be text, got {type(value).__name__}: "
                               f"{str(value)[:60]!r}")
        return values, problems

    @staticmethod
    def warn_problems(problems: dict[int, str], what: str) -> None:
        if problems:
            shown = "; ".join(list(problems.values())[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            log.warning("%d row(s) %s: %s%s", len(problems), what, shown, more)

    @staticmethod
    def warn_existing(rows: Records, keys: Sequence[str], source: Any) -> None:
        present = [k for k in keys if rows and k in rows[0]]
        for key in present:
            log.warning("%s: column %r already exists and will be overwritten", source, key)
