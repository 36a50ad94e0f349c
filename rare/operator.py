"""The operator base class, and the checks every operator makes on its input rows."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rare.errors import InputError

log = logging.getLogger("rare")


class Operator(ABC):
    """One pipeline stage: reads ``storage``, adds columns, writes the next step.

    Subclasses implement :meth:`run`. An operator that calls an LLM takes it as the
    constructor's first argument, ``llm_serving``; the pipeline runner passes it in.
    After :meth:`run`, :attr:`stats` says what happened (rows in, rows out, failures).
    """

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}

    @abstractmethod
    def run(self, storage: Any, **kwargs: Any) -> Any:
        """Read rows from ``storage``, process them, write them back."""

    def read_input(self, storage: Any, keys: Sequence[str]) -> tuple[pd.DataFrame | None, Any]:
        """This step's rows and their source; (None, source) after passing on an empty file."""
        df = storage.read("dataframe")
        source = getattr(storage, "read_path", "input")
        if len(df) == 0:
            log.warning("%s: no rows to process; the step's output is empty too", source)
            storage.write(df)
            self.stats = {"rows_in": 0, "rows_out": 0, "failed": 0, "tokens": 0, "seconds": 0.0}
            return None, source
        self.require_columns(df, keys, source)
        return df, source

    @staticmethod
    def require_columns(df: pd.DataFrame, keys: Sequence[str], source: Any) -> None:
        """Fail, naming the file and the field, when a needed column is absent."""
        missing = [k for k in dict.fromkeys(keys) if k not in df.columns]
        if missing:
            have = ", ".join(map(str, df.columns)) or "none"
            raise InputError(
                f"{source}: missing field(s) {', '.join(map(repr, missing))}; "
                f"the rows have: {have}"
            )

    @staticmethod
    def text_column(df: pd.DataFrame, key: str,
                    source: Any) -> tuple[list[str | None], dict[int, str]]:
        """The column as strings, and a reason for every row that has no usable text.

        Empty, whitespace-only, missing and non-text cells give None plus a reason naming
        the file, row and field; the caller marks those rows and goes on with the rest.
        """
        values: list[str | None] = []
        problems: dict[int, str] = {}
        for i, value in enumerate(df[key].tolist()):
            if isinstance(value, str) and value.strip():
                values.append(value)
                continue
            values.append(None)
            if value is None or (isinstance(value, float) and value != value):
                problems[i] = f"{source}: row {i}: field {key!r} is missing"
            elif isinstance(value, str):
                problems[i] = f"{source}: row {i}: field {key!r} is empty"
            else:
                problems[i] = (f"{source}: row {i}: field {key!r} must be text, got "
                               f"{type(value).__name__}: {str(value)[:60]!r}")
        return values, problems

    @staticmethod
    def warn_problems(problems: dict[int, str], what: str) -> None:
        if problems:
            shown = "; ".join(list(problems.values())[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            log.warning("%d row(s) %s: %s%s", len(problems), what, shown, more)

    @staticmethod
    def warn_existing(df: pd.DataFrame, keys: Sequence[str], source: Any) -> None:
        for key in keys:
            if key in df.columns:
                log.warning("%s: column %r already exists and will be overwritten", source, key)

    @staticmethod
    def warn_duplicates(texts: Sequence[str | None], key: str, source: Any) -> None:
        first: dict[str, int] = {}
        dups = []
        for i, text in enumerate(texts):
            if text is None:
                continue
            if text in first:
                dups.append(f"row {i} repeats row {first[text]}")
            else:
                first[text] = i
        if dups:
            log.warning("%s: %d row(s) have the same %r as an earlier row (%s%s)", source,
                        len(dups), key, "; ".join(dups[:5]), ", ..." if len(dups) > 5 else "")
