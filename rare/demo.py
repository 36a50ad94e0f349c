"""Real text that every Python installation has: the language reference in pydoc_data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rare.storage import write_records


@dataclass
class Exported:
    path: Path
    count: int


def python_docs(limit: int | None = None, min_chars: int = 2000) -> list[dict[str, str]]:
    """Topics of the Python language reference, longest first (the richest documents)."""
    from pydoc_data.topics import topics

    rows = [{"id": name, "title": name, "text": text.strip()}
            for name, text in topics.items() if len(text.strip()) >= min_chars]
    rows.sort(key=lambda r: (-len(r["text"]), r["id"]))
    return rows[:limit] if limit else rows


def export_python_docs(path: str | Path, limit: int | None = None) -> Exported:
    rows = python_docs(limit)
    return Exported(write_records(path, rows), len(rows))
