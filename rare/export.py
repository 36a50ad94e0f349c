"""``rare export``: a run's output rows turned into what a trainer reads.

Each format is an exporter, a subclass of :class:`Exporter` registered through the hook
``register_exporters`` (the first-party ones are in the ``rare-export`` distribution). This
module does what every format shares: it reads the rows, checks the columns the format
needs, leaves out failed and ungrounded rows (counted by reason; ``include_failed`` keeps
them), splits the rest into train and validation by a seeded shuffle, writes the format into
a temporary directory beside the target and moves it into place (an existing target is
replaced only with ``force``), with ``export.json`` saying what was kept and left out.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rare import plugins
from rare.errors import InputError, RareError, UnknownNameError
from rare.report import error_kind, first_error
from rare.runinfo import read_run_info
from rare.storage import read_records

Row = dict[str, Any]
#: the split names, in the order they are written
SPLITS = ("train", "validation")
#: the file that says what an export holds
MANIFEST = "export.json"


@dataclass
class ExportContext:
    """What an exporter knows of the export it writes."""

    source: Path
    out: Path
    name: str
    run_info: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    include_failed: bool = False
    #: every row of the source, kept or not (a BEIR corpus holds them all)
    all_rows: list[Row] = field(default_factory=list)
    #: the directory the export ends up in (``out`` is a temporary one while writing)
    target: Path | None = None


class Exporter:
    """One output format. Subclasses set :attr:`required_columns` and implement
    :meth:`write`; :meth:`skip` may leave out rows the format cannot express."""

    #: a line for ``rare plugins`` and error messages
    description: ClassVar[str] = ""
    #: columns the rows must have (checked before anything is written); ``"text"`` stands
    #: for the column of the documents' text, :attr:`text_key`
    required_columns: ClassVar[tuple[str, ...]] = ()
    #: whether :meth:`push_to_hub` is implemented
    can_push: ClassVar[bool] = False

    def __init__(self, text_key: str = "text") -> None:
        self.text_key = text_key

    def columns(self) -> list[str]:
        """The columns the rows must have."""
        return [self.text_key if c == "text" else c for c in self.required_columns]

    def prepare(self, rows: list[Row]) -> None:
        """See every row (failed ones too) before :meth:`skip` is asked about any."""

    def skip(self, row: Row) -> str | None:
        """Why this format cannot export ``row`` (None: it can)."""
        return None

    def write(self, splits: dict[str, list[Row]], ctx: ExportContext) -> list[Path]:
        """Write ``splits`` (split name -> rows, non-empty splits only) under ``ctx.out``;
        return the files written."""
        raise NotImplementedError

    def push_to_hub(self, repo: str, ctx: ExportContext, token: str) -> None:
        raise RareError(f"this format cannot be pushed to the Hugging Face Hub ({repo})")


def row_id(row: Row) -> str:
    """The document id of a row as BM25HardNeg named it: its ``id`` when the negatives' ids
    use that column, else ``row<N>`` (its index in the run)."""
    return str(row["_id"])


def left_out_reason(row: Row) -> str | None:
    """Why a row is left out of an export by default (None: it is kept)."""
    error = first_error(row)
    if error is not None:
        return f"failed: {error_kind(error)}"
    if row.get("reasoning_grounded") is False:
        return "ungrounded"
    if row.get("reasoning_answer_match") is False:
        return "wrong answer"
    return None


def _assign_ids(rows: list[Row]) -> None:
    """Give every row ``_index`` and ``_id`` (see :func:`row_id`)."""
    ids = {str(r["id"]) for r in rows if r.get("id") is not None}
    negative_ids = {str(d) for r in rows for d in (r.get("hard_negatives_ids") or [])}
    use_column = bool(ids) and (not negative_ids or negative_ids <= ids)
    for n, row in enumerate(rows):
        row["_index"] = n
        row["_id"] = str(row["id"]) if use_column and row.get("id") is not None else f"row{n}"


def split_rows(rows: list[Row], val_fraction: float, seed: int) -> dict[str, list[Row]]:
    """Train and validation rows: a seeded shuffle, the first ``val_fraction`` to
    validation (at least one row when the fraction is above 0 and there are two rows),
    each split in its original order."""
    if not 0 <= val_fraction < 1:
        raise RareError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    count = round(len(rows) * val_fraction)
    if val_fraction > 0 and count == 0 and len(rows) >= 2:
        count = 1
    held = set(order[:count])
    return {"train": [r for i, r in enumerate(rows) if i not in held],
            "validation": [r for i, r in enumerate(rows) if i in held]}


def check_columns(rows: list[Row], exporter: Exporter, fmt: str, source: Path) -> None:
    have: dict[str, None] = {}
    for row in rows:
        have.update(dict.fromkeys(row))
    for column in exporter.columns():
        if column not in have:
            shown = ", ".join(k for k in have if not k.startswith("_")) or "none"
            raise InputError(f"{source}: format {fmt!r} needs column {column!r}, which the "
                             f"rows lack (they have: {shown})")


@dataclass
class ExportResult:
    out: Path
    files: list[Path]
    counts: dict[str, Any]


def text_key_of(run_info: dict[str, Any]) -> str:
    """The documents' text column the run used (ReasonDistill's), else ``text``."""
    for step in reversed(run_info.get("steps") or []):
        run = step.get("run") or {}
        for key in ("input_text_key", "input_key"):
            if isinstance(run.get(key), str):
                return str(run[key])
    return "text"


def get_exporter(fmt: str, text_key: str = "text") -> Exporter:
    """A new exporter of format ``fmt``; an unknown name lists the known ones."""
    registry = plugins.get_registry("exporters")
    entry = registry.lookup.get(fmt)
    if entry is None:
        known = ", ".join(registry.names()) or "none (pip install rare-export)"
        raise UnknownNameError(f"unknown export format {fmt!r}; known formats: {known}")
    exporter = entry.obj(text_key=text_key)
    if not isinstance(exporter, Exporter):
        raise RareError(f"exporter {fmt!r} ({entry.obj!r}) is not a rare.export.Exporter")
    return exporter


def export(source: str | Path, fmt: str, out: str | Path, *, force: bool = False,
           include_failed: bool = False, val_fraction: float = 0.0, seed: int = 0,
           name: str = "rare", push_to_hub: str | None = None,
           token: str | None = None, text_key: str | None = None) -> ExportResult:
    """Export the rows of ``source`` (a run's output) as ``fmt`` into the directory ``out``.

    ``text_key`` is the column of the documents' text (default: the one the run used, from
    its ``.run.json``, else ``text``).
    """
    source, out = Path(source), Path(out)
    info = read_run_info(source)
    exporter = get_exporter(fmt, text_key or text_key_of(info))
    if push_to_hub and not exporter.can_push:
        raise RareError(f"--push-to-hub needs --format hf, not {fmt!r}")
    if push_to_hub and not token:
        raise RareError("--push-to-hub needs a Hugging Face token in the environment "
                        "(HF_TOKEN); it is read from there and never written anywhere")
    if out.exists() and not force and (out.is_file() or any(out.iterdir())):
        raise RareError(f"{out} already exists; pass --force to replace it")
    if not source.exists():
        raise InputError(f"{source}: no such file")
    rows: list[Row] = read_records(source)
    check_columns(rows, exporter, fmt, source)
    _assign_ids(rows)
    exporter.prepare(rows)
    left_out: Counter[str] = Counter()
    kept: list[Row] = []
    for row in rows:
        reason = None if include_failed else left_out_reason(row)
        reason = reason or exporter.skip(row)
        if reason is not None:
            left_out[reason] += 1
        else:
            kept.append(row)
    splits = split_rows(kept, val_fraction, seed)
    counts: dict[str, Any] = {
        "rows": len(rows), "kept": len(kept),
        "splits": {k: len(v) for k, v in splits.items() if v},
        "left_out": dict(sorted(left_out.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    ctx = ExportContext(source=source, out=out, name=name, run_info=info, counts=counts,
                        include_failed=include_failed, all_rows=rows, target=out)
    tmp = out.with_name(f".{out.name}.tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        ctx.out = tmp
        files = exporter.write({k: v for k, v in splits.items() if v}, ctx)
        manifest = {"format": fmt, "source": str(source), "name": name,
                    "include_failed": include_failed, "val_fraction": val_fraction,
                    "seed": seed, **counts, "files": [str(f.relative_to(tmp)) for f in files],
                    "run": ctx.run_info}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        if out.exists():
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ctx.out = out
    files = [out / f.relative_to(tmp) for f in files]
    if push_to_hub:
        assert token is not None
        exporter.push_to_hub(push_to_hub, ctx, token)
    return ExportResult(out, files, counts)


def write_jsonl(path: Path, records: list[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
