"""What a run reports: per-stage stats, the rows' failures by reason, usage."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


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
    #: rows that did not fail but carry a ``*_warning`` (a shortfall of negatives), by kind
    row_warnings: Counter[str] = field(default_factory=Counter)


def first_error(row: dict[str, Any]) -> str | None:
    """The first ``*_error`` a row carries, None when it has none."""
    return next((v for k, v in row.items() if k.endswith("_error") and v is not None), None)


def first_warning(row: dict[str, Any]) -> str | None:
    """The first ``*_warning`` a row carries, None when it has none."""
    return next((v for k, v in row.items() if k.endswith("_warning") and v is not None), None)


def error_kind(error: str) -> str:
    """The reason's kind: the text before its first colon ("skipped", "unusable reply", ...)."""
    return error.split(":", 1)[0].strip()
