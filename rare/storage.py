"""Where a pipeline's rows live between steps: the :class:`Storage` protocol and FileStorage.

Steps are numbered as in the reference: step 0 is the input, and operator *k* (1-based)
reads step *k-1* and writes step *k*. A storage hands out a step's rows in batches, an
atomic writer for a step, and the journal of the LLM replies that went into a step; the
journal's name is decided here and nowhere else.

``FileStorage`` also keeps the reference's view API: ``storage.step()`` returns a view for
one operator, whose ``read()`` gives the step's rows (a DataFrame, or records with
``"dict"``) and whose ``write()`` writes the next step.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import pandas as pd

from rare.errors import StorageError
from rare.formats import (
    FORMATS,
    Records,
    RowWriter,
    atomic_write_bytes,
    format_of,
    iter_batches,
    read_records,
    to_records,
    write_records,
)

if TYPE_CHECKING:
    from rare.llm.journal import Journal

__all__ = ["FORMATS", "FileStorage", "Records", "RowWriter", "Storage", "atomic_write_bytes",
           "format_of", "iter_batches", "read_records", "to_records", "write_records"]

@runtime_checkable
class Storage(Protocol):
    """What a runner needs from a storage backend."""

    def batches(self, step: int, batch_size: int) -> Iterator[Records]:
        """The rows of ``step`` in lists of at most ``batch_size``; the step is read once."""
        ...

    def writer(self, step: int) -> RowWriter:
        """An atomic writer for ``step``: nothing replaces the old rows until it commits."""
        ...

    def journal(self, step: int) -> Journal:
        """The journal of the LLM replies that go into ``step`` (created on first use)."""
        ...

    def journal_path(self, step: int) -> Path:
        """Where :meth:`journal` keeps its lines."""
        ...

    def location(self, step: int) -> str:
        """What messages call ``step`` (a file name)."""
        ...

class FileStorage:
    """The reference pipeline's storage: a first-entry file, then one cache file per step."""

    def __init__(self, first_entry_file_name: str, cache_path: str = "./cache",
                 file_name_prefix: str = "rare_cache_step", cache_type: str = "jsonl") -> None:
        if cache_type not in FORMATS:
            raise StorageError(f"cache_type must be one of {', '.join(FORMATS)}, "
                               f"got {cache_type!r}")
        self.first_entry_file_name = str(first_entry_file_name)
        self.cache_path = str(cache_path)
        self.file_name_prefix = file_name_prefix
        self.cache_type = cache_type
        self.operator_step = -1

    # -- the protocol ---------------------------------------------------------------------
    def path_for_step(self, step: int) -> Path:
        if step == 0:
            return Path(self.first_entry_file_name)
        return Path(self.cache_path) / f"{self.file_name_prefix}_step{step}.{self.cache_type}"

    def batches(self, step: int, batch_size: int) -> Iterator[Records]:
        return iter_batches(self.path_for_step(step), batch_size)

    def writer(self, step: int) -> RowWriter:
        if step < 1:
            raise StorageError("step 0 is the input file; operators write steps 1 and up")
        return RowWriter(self.path_for_step(step), self.cache_type)

    def journal_path(self, step: int) -> Path:
        path = self.path_for_step(step)
        return path.with_name(path.name + ".journal")

    def journal(self, step: int) -> Journal:
        from rare.llm.journal import Journal

        return Journal(self.journal_path(step))

    def location(self, step: int) -> str:
        return str(self.path_for_step(step))

    # -- blocks (runners that spread a step over workers) -----------------------------------
    def blocks_path(self, step: int) -> Path:
        """The folder of ``step``'s blocks: each finished block's rows and each block's
        journal, kept by a runner that works block by block (``rare-ray``) to resume."""
        path = self.path_for_step(step)
        return path.with_name(path.name + ".blocks")

    def block_journal_path(self, step: int, block: int) -> Path:
        """Where the journal of block ``block`` of ``step`` keeps its lines."""
        return self.blocks_path(step) / f"block-{block:06d}.journal"

    def block_journal(self, step: int, block: int) -> Journal:
        """The journal of the LLM replies that go into block ``block`` of ``step``."""
        from rare.llm.journal import Journal

        return Journal(self.block_journal_path(step, block))

    # -- the reference's view API ---------------------------------------------------------
    def step(self) -> FileStorage:
        """Advance to the next operator and return a view bound to that step."""
        self.operator_step += 1
        return copy.copy(self)

    @property
    def read_step(self) -> int:
        """The step this view reads (its operator writes the next one)."""
        return max(self.operator_step, 0)

    @property
    def read_path(self) -> Path:
        return self.path_for_step(self.read_step)

    @property
    def write_path(self) -> Path:
        return self.path_for_step(self.read_step + 1)

    def read(self, output_type: Literal["dataframe", "dict"] = "dataframe") -> Any:
        """The rows of this step's input: a DataFrame, or a list of records with "dict"."""
        if output_type not in ("dataframe", "dict"):
            raise StorageError(f"output_type must be 'dataframe' or 'dict', got {output_type!r}")
        records = read_records(self.read_path)
        if output_type == "dict":
            return records
        return pd.DataFrame.from_records(records) if records else pd.DataFrame()

    def write(self, data: pd.DataFrame | Iterable[dict[str, Any]]) -> str:
        """Write this step's output (a DataFrame or records) atomically; return its path."""
        return str(write_records(self.write_path, data, self.cache_type))

def remove_journals(storage: Storage, steps: Iterable[int]) -> None:
    """Delete the journals of ``steps`` (their rows are written: a finished run needs none)."""
    for step in steps:
        try:
            os.unlink(storage.journal_path(step))
        except FileNotFoundError:
            pass


def remove_blocks(storage: FileStorage, steps: Iterable[int]) -> None:
    """Delete the block folders of ``steps`` (a finished run needs none)."""
    import shutil

    for step in steps:
        shutil.rmtree(storage.blocks_path(step), ignore_errors=True)
