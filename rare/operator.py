"""The operator base class, and the checks every operator makes on its input rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import pandas as pd

from rare.errors import InputError


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

    @staticmethod
    def require_columns(df: pd.DataFrame, keys: Sequence[str], source: Any) -> None:
        """Fail, naming the file and the field, when a needed column is absent."""
        missing = [k for k in keys if k not in df.columns]
        if missing:
            have = ", ".join(map(str, df.columns)) or "none"
            raise InputError(
                f"{source}: missing field(s) {', '.join(map(repr, missing))}; "
                f"the rows have: {have}"
            )

    @staticmethod
    def text_or_none(df: pd.DataFrame, key: str, source: Any) -> list[str | None]:
        """The column as strings, None for empty cells; any other type is an input error."""
        values: list[str | None] = []
        for i, value in enumerate(df[key].tolist()):
            if value is None or (isinstance(value, float) and value != value):
                values.append(None)
            elif isinstance(value, str):
                values.append(value if value.strip() else None)
            else:
                raise InputError(f"{source}: row {i}: field {key!r} must be text, got "
                                 f"{type(value).__name__}: {str(value)[:60]!r}")
        return values
