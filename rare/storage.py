"""File-backed storage with the reference's step protocol, in json, jsonl, csv or parquet.

``storage.step()`` returns a view for one operator: the view for step 0 reads the
first-entry file, the one for step k reads ``{cache_path}/{prefix}_step{k}.{cache_type}``,
and every view writes step k+1. Writes are atomic: a crash mid-write leaves the previous
file intact. Lists and dicts survive every format (csv stores them as JSON text).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from rare.errors import StorageError

FORMATS = ("json", "jsonl", "csv", "parquet")
_UMASK = os.umask(0)
os.umask(_UMASK)
Records = list[dict[str, Any]]


def format_of(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise StorageError(f"{path}: unknown format {suffix!r}; use one of {', '.join(FORMATS)}")
    return suffix


def _clean(value: Any) -> Any:
    """Plain Python values: NaN becomes None, numpy scalars and arrays become Python ones."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _clean(value.tolist())
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, tuple):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def to_records(data: pd.DataFrame | Iterable[dict[str, Any]]) -> Records:
    if isinstance(data, pd.DataFrame):
        return [_clean(r) for r in data.to_dict("records")]
    records = list(data)
    for i, row in enumerate(records):
        if not isinstance(row, dict):
            raise StorageError(f"row {i}: expected a dict (a record), got {type(row).__name__}")
    return [_clean(r) for r in records]


# -- reading ------------------------------------------------------------------------------
def _read_json(path: Path) -> Records:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            hint = " (this looks like JSON Lines: name the file .jsonl)"
        raise StorageError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}{hint}") from None
    if isinstance(data, dict):  # a single record
        data = [data]
    if not isinstance(data, list):
        raise StorageError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise StorageError(f"{path}: row {i}: expected a JSON object, got "
                               f"{type(row).__name__}")
    return data


def _read_jsonl(path: Path) -> Records:
    rows = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{path}: line {lineno}: invalid JSON at column {exc.colno}: "
                               f"{exc.msg}") from None
        if not isinstance(row, dict):
            raise StorageError(f"{path}: line {lineno}: expected a JSON object, got "
                               f"{type(row).__name__}")
        rows.append(row)
    return rows


def _decode_json_cells(column: list[str]) -> list[Any] | None:
    """Decode a csv column whose every non-empty cell is a JSON array or object."""
    filled = [c for c in column if c != ""]
    if not filled or not all(c[:1] in "[{" for c in filled):
        return None
    try:
        return [json.loads(c) if c != "" else None for c in column]
    except json.JSONDecodeError:
        return None


def _read_csv(path: Path) -> Records:
    text = _read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, None)
        if header is None:
            return []
        raw = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise StorageError(f"{path}: row {lineno - 1} (line {lineno}): expected "
                                   f"{len(header)} fields, got {len(row)}")
            raw.append(row)
    except csv.Error as exc:
        raise StorageError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from None
    columns: dict[str, list[Any]] = {}
    for j, name in enumerate(header):
        cells = [r[j] for r in raw]
        decoded = _decode_json_cells(cells)
        columns[name] = decoded if decoded is not None else [c if c != "" else None for c in cells]
    return [{name: columns[name][i] for name in header} for i in range(len(raw))]


def _read_parquet(path: Path) -> Records:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"{path}: not a readable parquet file: {exc}") from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StorageError(f"{path}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StorageError(f"{path}: line {line}: not valid UTF-8 (byte {exc.start}: "
                           f"{data[exc.start:exc.start + 1]!r})") from None


_READERS = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


def read_records(path: str | os.PathLike[str]) -> Records:
    """All rows of a data file, by its extension."""
    path = Path(path)
    fmt = format_of(path)
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    return _READERS[fmt](path)


# -- writing ------------------------------------------------------------------------------
def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def _write_bytes(records: Records, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(records, ensure_ascii=False, indent=2).encode("utf-8")
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if fmt == "csv":
        fields: dict[str, None] = {}
        for r in records:
            fields.update(dict.fromkeys(r))
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=list(fields))
        writer.writeheader()
        for r in records:
            writer.writerow({k: _csv_cell(r.get(k)) for k in fields})
        return out.getvalue().encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue().to_pybytes()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, fsync'd."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_records(path: str | os.PathLike[str], data: pd.DataFrame | Iterable[dict[str, Any]],
                  fmt: str | None = None) -> Path:
    """Write rows atomically in the format of ``fmt`` or of the path's extension."""
    path = Path(path)
    fmt = fmt or format_of(path)
    try:
        payload = _write_bytes(to_records(data), fmt)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{path}: cannot write rows as {fmt}: {exc}") from exc
    atomic_write_bytes(path, payload)
    return path


class FileStorage:
    """The reference pipeline's storage: a first-entry file, then one cache file per step."""

    def __init__(self, first_entry_file_name: str, cache_path: str = "./cache",
                 file_name_prefix: str = "rare_cache_step", cache_type: str = "jsonl") -> None:
        if cache_type not in FORMATS:
            raise StorageError(f"cache_type must be one of {', '.join(FORMATS)}, "
                               f"got {cache_type!r}")
        self.first_entry_file_name = first_entry_file_name
        self.cache_path = cache_path
        self.file_name_prefix = file_name_prefix
        self.cache_type = cache_type
        self.operator_step = -1

    def step(self) -> FileStorage:
        """Advance to the next operator and return a view bound to that step."""
        self.operator_step += 1
        return copy.copy(self)

    def path_for_step(self, step: int) -> Path:
        if step == 0:
            return Path(self.first_entry_file_name)
        return Path(self.cache_path) / f"{self.file_name_prefix}_step{step}.{self.cache_type}"

    @property
    def read_path(self) -> Path:
        return self.path_for_step(max(self.operator_step, 0))

    @property
    def write_path(self) -> Path:
        return self.path_for_step(max(self.operator_step, 0) + 1)

    def read(self, output_type: Literal["dataframe", "dict"] = "dataframe") -> Any:
        """The rows of this step's input: a DataFrame, or a list of records with "dict"."""
        records = read_records(self.read_path)
        if output_type == "dict":
            return records
        if output_type == "dataframe":
            return pd.DataFrame.from_records(records) if records else pd.DataFrame()
        raise StorageError(f"output_type must be 'dataframe' or 'dict', got {output_type!r}")

    def write(self, data: pd.DataFrame | Iterable[dict[str, Any]]) -> str:
        """Write this step's output (a DataFrame or records) atomically; return its path."""
        return str(write_records(self.write_path, data, self.cache_type))
