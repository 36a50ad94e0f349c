"""Bad input files and rows: each gets a message naming file, row and field; no traceback,
and the rows that were fine are kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rare.storage import read_records, write_records

# (file name, bytes, expected message) for files that cannot be read at all.
BAD_FILES = [
    ("absent.jsonl", None, "absent.jsonl: file not found"),
    ("docs.txt", b"plain text", "docs.txt: unknown format 'txt'; use one of json, jsonl, csv, parquet"),
    ("lines.json", b'{"text": "a"}\n{"text": "b"}\n', "lines.json: invalid JSON at line 2, column 1: Extra data (this looks like "
                   "JSON Lines: name the file .jsonl)"),
    ("broken.jsonl", b'{"text": "a"}\n{"text": "b"\n', "broken.jsonl: line 2: invalid JSON"),
    ("array.jsonl", b'[{"text": "a"}]\n', "array.jsonl: line 1: expected a JSON object, got list"),
    ("cp1252.jsonl", b'{"text": "na\xefve"}\n', "cp1252.jsonl: line 1: not valid UTF-8"),
    ("ragged.csv", b"text\n\"a\"\n\"b\",\"c\"\n", "ragged.csv: row 2 (line 3): expected 1 fields, got 2"),
    ("fake.parquet", b"PAR1 nope", "fake.parquet: not a readable parquet file"),
    ("notext.jsonl", b'{"body": "a"}\n', "missing field(s) 'text'; the rows have: body"),
]


def rare_run(input_path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Steps that need no LLM, so that only the input is on trial.
    config = tmp_path / "steps.toml"
    config.write_text('[[steps]]\noperator = "BM25HardNeg"\n'
                      'run = { input_question_key = "text" }\n')
    return subprocess.run(
        [sys.executable, "-m", "rare.cli", "run", "--config", str(config),
         "--input", str(input_path), "--output", str(tmp_path / "out.jsonl"),
         "--cache-dir", str(tmp_path / "cache"), "--retriever", "gensim"],
        capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("name,content,message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_unreadable_input_fails_with_one_clear_line(tmp_path: Path, name: str,
                                                    content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    proc = rare_run(path, tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_rows_are_marked_and_good_rows_kept(tmp_path: Path) -> None:
    rows = [
        {"text": "Cats purr when they are content and sometimes when hurt."},
        {"text": "   "},
        {"text": 42},
        {"note": "no text field in this row"},
        {"text": "Dogs bark at strangers and wag their tails at friends."},
        {"text": "Cats purr when they are content and sometimes when hurt."},
        {"text": "Parrots can imitate human speech and household sounds."},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = rare_run(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = read_records(tmp_path / "out.jsonl")
    assert len(out) == len(rows)
    errors = [r["hardneg_error"] for r in out]
    assert errors[1] == "skipped: " + f"{path}: row 1: field 'text' is empty"
    assert errors[2] == "skipped: " + f"{path}: row 2: field 'text' must be text, got int: '42'"
    assert errors[3] == "skipped: " + f"{path}: row 3: field 'text' is missing"
    for i in (0, 4, 5, 6):
        # four short rows cannot give three negatives each: kept, and said so
        assert out[i]["hard_negatives"] is not None
        assert errors[i] is None
        assert out[i]["hardneg_warning"] == (
            f"shortfall: found {len(out[i]['hard_negatives'])} of 3 hard negatives (too few "
            "lexically close documents)")
    # the repeated row is a near-duplicate of its twin, so never its negative
    assert "row5" not in out[0]["hard_negatives_ids"] and "row0" not in out[5]["hard_negatives_ids"]
    assert "row 5 repeats row 0" in proc.stderr
    # a shortfall is a warning: the row is kept and counted apart from the failures
    assert "rows in 7, rows out 7, failed rows 3" in proc.stdout
    assert "failed rows by reason: skipped: 3" in proc.stdout
    assert "rows kept with a warning: shortfall: 4" in proc.stdout


def test_zero_row_file_gives_an_empty_output(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    proc = rare_run(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no rows to process" in proc.stderr
    assert read_records(tmp_path / "out.jsonl") == []


def test_existing_output_column_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    write_records(path, [{"text": "alpha beta", "hard_negatives": ["old"]},
                         {"text": "gamma delta", "hard_negatives": ["old"]}])
    proc = rare_run(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "column 'hard_negatives' already exists and will be overwritten" in proc.stderr
