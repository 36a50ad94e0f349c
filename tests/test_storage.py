from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rare import FileStorage, StorageError
from rare.storage import read_records, write_records

ROWS = [
    {"id": 1, "text": "alpha, \"quoted\"\nsecond line", "negs": ["a", "b, c", "[x]"],
     "meta": {"k": [1, 2]}, "score": 0.5, "flag": True},
    {"id": 2, "text": "[not json] looks like a list", "negs": [], "meta": {"k": []},
     "score": None, "flag": False},
]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_round_trip_keeps_lists_and_dicts(tmp_path: Path, fmt: str) -> None:
    path = write_records(tmp_path / f"rows.{fmt}", ROWS)
    back = read_records(path)
    assert [r["negs"] for r in back] == [["a", "b, c", "[x]"], []]
    assert [r["meta"] for r in back] == [{"k": [1, 2]}, {"k": []}]
    assert [r["text"] for r in back] == [ROWS[0]["text"], ROWS[1]["text"]]
    assert back[1]["score"] is None


@pytest.mark.parametrize("cache_type", ["json", "jsonl", "csv", "parquet"])
def test_step_protocol_reads_first_entry_then_cache_files(tmp_path: Path, cache_type: str) -> None:
    first = tmp_path / "docs.json"
    first.write_text(json.dumps([{"text": "one"}, {"text": "two"}]))
    storage = FileStorage(str(first), cache_path=str(tmp_path / "cache"),
                          file_name_prefix="rare_cache_step", cache_type=cache_type)
    s0 = storage.step()
    df = s0.read("dataframe")
    assert isinstance(df, pd.DataFrame) and list(df["text"]) == ["one", "two"]
    df["negs"] = [["x", "y"], ["z"]]
    written = s0.write(df)
    assert written == str(tmp_path / "cache" / f"rare_cache_step_step1.{cache_type}")
    s1 = storage.step()
    records = s1.read("dict")
    assert records == [{"text": "one", "negs": ["x", "y"]}, {"text": "two", "negs": ["z"]}]
    s1.write(records + [{"text": "three", "negs": []}])
    assert len(storage.step().read("dict")) == 3


def test_crash_mid_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_records(target, [{"text": "old"}])
    # A child process starts writing a large file and is killed in the middle.
    code = f"""
import os, signal
import rare.formats as st
real = st.atomic_write_bytes
def slow(path, data):
    def die(fd):
        os.kill(os.getpid(), signal.SIGKILL)
    os.fsync = die
    real(path, data)
st.atomic_write_bytes = slow
st.write_records({str(target)!r}, [{{"text": "new" * 1000}}] * 1000)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    assert read_records(target) == [{"text": "old"}]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.jsonl"]
    assert leftovers and all(n.startswith(".out.jsonl.") for n in leftovers)


def test_failed_serialisation_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_records(target, [{"text": "old"}])
    with pytest.raises(StorageError, match="cannot write rows as json"):
        write_records(target, [{"text": object()}])
    assert read_records(target) == [{"text": "old"}]
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


BAD_INPUTS = [
    ("missing.jsonl", None, r"missing\.jsonl: file not found"),
    ("rows.txt", b"hello", r"rows\.txt: unknown format 'txt'"),
    ("bad.jsonl", b'{"text": "ok"}\n{"text": oops}\n', r"bad\.jsonl: line 2: invalid JSON"),
    ("list.jsonl", b'{"text": "ok"}\n[1, 2]\n', r"list\.jsonl: line 2: expected a JSON object"),
    ("bad.json", b'[{"text": "a"},\n {"text": }]', r"bad\.json: invalid JSON at line 2"),
    ("scalar.json", b"42", r"scalar\.json: expected a JSON array of objects"),
    ("mixed.json", b'[{"text": "a"}, "b"]', r"mixed\.json: row 1: expected a JSON object"),
    ("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"latin1\.jsonl: line 2: not valid UTF-8"),
    ("ragged.csv", b"text,id\na,1\nb,2,3\n", r"ragged\.csv: row 2 \(line 3\): expected 2 fields, got 3"),
    ("junk.parquet", b"this is not parquet", r"junk\.parquet: not a readable parquet file"),
]


@pytest.mark.parametrize("name,content,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_file_and_place(tmp_path: Path, name: str, content: bytes | None,
                                        message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StorageError, match=message):
        read_records(path)


def test_unknown_cache_type_is_rejected() -> None:
    with pytest.raises(StorageError, match="cache_type must be one of"):
        FileStorage("docs.json", cache_type="xml")
