"""What a runner and an operator share for one step: the step's context and the operator's
side of the contract, so that runners need not import the operator base class."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rare.formats import Records
    from rare.llm.journal import Journal


@dataclass
class StepContext:
    """What an operator knows of the step it runs in.

    ``source`` names the input in messages, ``start`` is the index of the current batch's
    first row in the step (so a message can name the row), and ``journal`` (opened by the
    runner on first use) keeps the LLM replies of this step for resuming.
    """

    source: str = "input"
    start: int = 0
    opener: Any = None  # () -> Journal, given by the runner
    _journal: Any = field(default=None, repr=False)

    @property
    def journal(self) -> Journal | None:
        if self._journal is None and self.opener is not None:
            self._journal = self.opener()
        journal: Journal | None = self._journal
        return journal

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


class StepOperator(Protocol):
    """The calls a runner makes on an operator (:class:`rare.Operator` implements them)."""

    needs_all_rows: bool
    stats: dict[str, Any]

    def configure(self) -> None: ...
    def input_columns(self) -> list[str]: ...
    def output_columns(self) -> list[str]: ...
    def open(self, ctx: StepContext) -> None: ...
    def prepare(self, batches: Iterable[Records], ctx: StepContext) -> None: ...
    def transform(self, rows: Records, ctx: StepContext) -> Records: ...
    def close(self) -> None: ...
    def calls_llm(self) -> bool: ...
    def share_prepared(self, directory: Path) -> dict[str, Any] | None: ...
    def is_transform(self) -> bool: ...
    def require_columns(self, rows: Any, keys: Sequence[str], source: Any) -> None: ...
    def warn_existing(self, rows: Records, keys: Sequence[str], source: Any) -> None: ...
