"""Data files in json, jsonl, csv or parquet: streaming readers, atomic writers.

jsonl and parquet are read a row at a time, and jsonl and json are written a batch at a
time, so a step's rows never need to sit in memory together; csv (whose JSON-cell columns
are decided per column) and a JSON array are read whole, csv and parquet written whole.
Every write goes to a temporary file that is fsync'd and renamed: a crash mid-write leaves
the previous file intact. Lists and dicts survive every format (csv stores them as JSON text).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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
def open_data(path: Path) -> BinaryIO:
    """Open a data file for reading: the one place every reader goes through."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise StorageError(f"{path}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None


def _decode(path: Path, data: bytes, lineno: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = lineno + data[: exc.start].count(b"\n")
        raise StorageError(f"{path}: line {line}: not valid UTF-8 (byte {exc.start}: "
                           f"{data[exc.start:exc.start + 1]!r})") from None


def _read_text(path: Path) -> str:
    with open_data(path) as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return _decode(path, data, 1)


def _iter_json(path: Path) -> Iterator[dict[str, Any]]:
    # A JSON array has to be parsed whole; jsonl and parquet stream.
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
    yield from data


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open_data(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            line = _decode(path, raw, lineno)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StorageError(f"{path}: line {lineno}: invalid JSON at column "
                                   f"{exc.colno}: {exc.msg}") from None
            if not isinstance(row, dict):
                raise StorageError(f"{path}: line {lineno}: expected a JSON object, got "
                                   f"{type(row).__name__}")
            yield row


def _decode_json_cells(column: list[str]) -> list[Any] | None:
    """Decode a csv column whose every non-empty cell is a JSON array or object."""
    filled = [c for c in column if c != ""]
    if not filled or not all(c[:1] in "[{" for c in filled):
        return None
    try:
        return [json.loads(c) if c != "" else None for c in column]
    except json.JSONDecodeError:
        return None


def _iter_csv(path: Path) -> Iterator[dict[str, Any]]:
    # Whether a column holds JSON cells is decided over the whole column, so csv is read whole.
    text = _read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, None)
        if header is None:
            return
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
    for i in range(len(raw)):
        yield {name: columns[name][i] for name in header}


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_data(path) as fh:
        try:
            parquet = pq.ParquetFile(fh)
            for batch in parquet.iter_batches(batch_size=1024):
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise StorageError(f"{path}: not a readable parquet file: {exc}") from None


_READERS = {"json": _iter_json, "jsonl": _iter_jsonl, "csv": _iter_csv,
            "parquet": _iter_parquet}


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The rows of a data file, one at a time (jsonl and parquet stream from disk)."""
    path = Path(path)
    fmt = format_of(path)
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    return _READERS[fmt](path)


def iter_batches(path: str | os.PathLike[str], batch_size: int) -> Iterator[Records]:
    """The rows of a data file in lists of at most ``batch_size``."""
    if batch_size < 1:
        raise StorageError(f"batch_size must be >= 1, got {batch_size}")
    batch: Records = []
    for row in iter_records(path):
        batch.append(row)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_records(path: str | os.PathLike[str]) -> Records:
    """All rows of a data file, by its extension."""
    return list(iter_records(path))


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
    data: bytes = sink.getvalue().to_pybytes()
    return data


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
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
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


class RowWriter:
    """Writes one data file batch by batch, atomically: nothing appears until :meth:`commit`.

    Use it as a context manager: leaving the block normally commits, an exception discards
    the temporary file and leaves the previous version of ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike[str], fmt: str | None = None) -> None:
        self.path = Path(path)
        self.fmt = fmt or format_of(self.path)
        self.rows = 0
        self._held: Records = []  # csv and parquet are written whole at commit
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)
        self._tmp = Path(tmp)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")
        if self.fmt == "json":
            self._fh.write(b"[")

    def write(self, data: pd.DataFrame | Iterable[dict[str, Any]]) -> None:
        """Append rows (records or a DataFrame)."""
        if self._fh is None:
            raise StorageError(f"{self.path}: the writer is closed")
        records = to_records(data)
        start = self.rows
        self.rows += len(records)
        if self.fmt in ("csv", "parquet"):
            self._held.extend(records)
            return
        try:
            if self.fmt == "jsonl":
                payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            else:
                sep = ",\n  " if start else "\n  "
                payload = "".join((sep if j == 0 else ",\n  ") + json.dumps(r, ensure_ascii=False)
                                  for j, r in enumerate(records))
        except (TypeError, ValueError) as exc:
            raise StorageError(f"{self.path}: cannot write rows as {self.fmt}: {exc}") from exc
        self._fh.write(payload.encode("utf-8"))

    def commit(self) -> Path:
        """Finish the file, fsync it and move it into place."""
        if self._fh is None:
            raise StorageError(f"{self.path}: the writer is closed")
        fh, self._fh = self._fh, None
        try:
            if self.fmt == "json":
                fh.write(b"\n]\n" if self.rows else b"]\n")
            elif self._held or self.fmt in ("csv", "parquet"):
                try:
                    fh.write(_write_bytes(self._held, self.fmt))
                except (TypeError, ValueError) as exc:
                    raise StorageError(f"{self.path}: cannot write rows as {self.fmt}: "
                                       f"{exc}") from exc
                self._held = []
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            fh.close()
            self._tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Drop what was written; the previous file stays as it was."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
