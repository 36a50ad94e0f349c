"""Never lose a finished row: kill ``rare run`` at random moments, run it again, compare.

The LLM endpoint is the fault server in its own process, so it outlives the client we kill
and counts every call. The response cache is off (``--no-cache``): resuming rests on the
per-step journals alone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServerProcess

from rare.llm import Completion, Journal
from rare.storage import read_records, write_records

ROWS = 24
WORKERS = 2
DELAY = 0.04  # seconds per call: a run spends ~1 s talking to the LLM
KILLS = 4

# Python leaves SIGINT ignored in a child when its parent ignored it (a background job);
# the wrapper puts back the handler that raises KeyboardInterrupt, as in a terminal.
CLI = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "sys.argv[0] = 'rare'; runpy.run_module('rare.cli', run_name='__main__')")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = read_records(shared("cacm", "cacm.jsonl"))
    rows = [r for r in rows if len(r["contents"]) > 300][:ROWS]
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    write_records(path, rows)
    return path


def rare_args(url: str, corpus: Path, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", CLI, "run", "--input", str(corpus),
            "--output", str(work / "out.jsonl"), "--api-url", url, "--model", "resume-test",
            "--retriever", "gensim", "--text-key", "contents", "--num-neg", "2",
            "--cache-dir", str(work / "cache"), "-S", f"max_workers={WORKERS}",
            "-S", "max_retries=2", "-S", "timeout=10", "-S", "retry_backoff=0.02", *extra]


def run_to_end(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def wait_for_calls(server: FaultServerProcess, proc: subprocess.Popen, target: int,
                   limit: float = 60) -> None:
    """Until the server has seen ``target`` calls, or the client ended."""
    deadline = time.monotonic() + limit
    while server.stats()["calls"] < target and proc.poll() is None:
        assert time.monotonic() < deadline, "the client made no progress"
        time.sleep(0.01)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with FaultServerProcess(tmp_path_factory.mktemp("server"), delay=DELAY,
                            max_seconds=300) as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(server, corpus, tmp_path_factory) -> list[dict[str, Any]]:
    """The output of an uninterrupted run; exactly one call per row and LLM stage."""
    work = tmp_path_factory.mktemp("reference")
    server.reset()
    run_to_end(rare_args(server.chat_url, corpus, work, "--no-cache"))
    stats = server.stats()
    assert stats["calls"] == 2 * ROWS and stats["by_kind"] == {"doc2query": ROWS,
                                                              "distill": ROWS}
    return read_records(work / "out.jsonl")


@pytest.fixture()
def counted(server, reference):
    """The server with its counts at zero."""
    server.reset()
    return server


def test_sigkill_at_random_moments_then_resume(counted, corpus, reference, tmp_path):
    server = counted
    work = tmp_path / "killed"
    args = rare_args(server.chat_url, corpus, work, "--no-cache")
    rng = random.Random(20240611)  # a fixed schedule of "random" moments
    kills = 0
    for n in range(KILLS):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # spread the kills over both LLM stages, each at least a few calls further on
            seen = server.stats()["calls"]
            target = max(seen + 3, 2 * ROWS * (n + 1) // (KILLS + 1) + rng.randint(-3, 3))
            wait_for_calls(server, proc, target)
            time.sleep(rng.uniform(0, 3 * DELAY))  # mid-call, mid-write, between calls
        finally:
            alive = proc.poll() is None
            stop(proc)
        if not alive:
            break  # it finished before we could kill it
        kills += 1
    assert kills >= 3
    journals = sorted(p.name for p in (work / "cache").glob("*.journal"))
    assert journals and all(name.endswith(".jsonl.journal") for name in journals)

    run_to_end(args)
    assert read_records(work / "out.jsonl") == reference

    stats = server.stats()
    sent: dict[str, int] = {}
    for entry in stats["log"]:
        sent[entry["key"]] = sent.get(entry["key"], 0) + 1
    # the same requests as the uninterrupted run, each finished one sent once: only a call
    # in flight when its process was killed (at most WORKERS per kill) is sent again
    assert len(sent) == 2 * ROWS
    assert stats["calls"] - 2 * ROWS <= kills * WORKERS, stats["calls"]
    resent = [key for key, count in sent.items() if count > 1]
    assert len(resent) <= kills * WORKERS


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(counted, corpus, reference, tmp_path):
    server = counted
    work = tmp_path / "interrupted"
    args = rare_args(server.chat_url, corpus, work, "--no-cache")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_calls(server, proc, ROWS // 2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    done = server.stats()["calls"]
    assert done < 2 * ROWS

    run_to_end(args)
    assert read_records(work / "out.jsonl") == reference
    # what was in flight at Ctrl-C finished and was kept: nothing is asked twice
    stats = server.stats()
    assert stats["calls"] == 2 * ROWS
    assert len({e["key"] for e in stats["log"]}) == 2 * ROWS


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys, tmp_path):
    import rare.cli

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rare.cli.Pipeline, "run", interrupted)
    monkeypatch.setattr(sys, "argv", [
        "rare", "run", "--input", str(tmp_path / "in.jsonl"), "--output",
        str(tmp_path / "out.jsonl"), "--api-url", "http://127.0.0.1:9/v1/chat/completions"])
    with pytest.raises(SystemExit) as info:
        rare.cli.main()
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again" in err


# -- the journal itself ----------------------------------------------------------------------
def test_journal_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "step1.jsonl.journal"
    journal = Journal(path)
    for i in range(5):
        journal.put(f"k{i}", Completion(text=f"reply {i}", prompt_tokens=i))
    journal.close()
    whole = path.read_bytes()
    line = json.dumps({"key": "k5", "completion": {"text": "reply 5 é", "error": None}},
                      ensure_ascii=False).encode("utf-8")
    path.write_bytes(whole + line[: len(line) - 7])  # died in the middle of a write

    again = Journal(path)
    assert sorted(again.entries) == [f"k{i}" for i in range(5)]
    hit = again.get("k3")
    assert hit is not None and hit.text == "reply 3" and hit.cached and hit.prompt_tokens == 3
    again.put("k5", Completion(text="reply 5"))
    again.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 7  # 5 whole, the torn one, the new one on a line of its own
    third = Journal(path)
    assert sorted(third.entries) == [f"k{i}" for i in range(6)]
    assert third.get("k5").text == "reply 5"  # type: ignore[union-attr]
    third.close()


def test_journal_keeps_a_reply_that_arrives_after_close(tmp_path):
    # a call in flight when the step stopped (Ctrl-C, fail-fast) comes back later
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.put("a", Completion(text="first"))
    journal.close()
    journal.put("b", Completion(text="late"))
    reopened = Journal(path)
    assert {k: c.text for k, c in reopened.entries.items()} == {"a": "first", "b": "late"}
    reopened.close()


def test_journal_syncs_in_batches(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    journal = Journal(tmp_path / "j.journal", sync_every=4, sync_seconds=3600)
    for i in range(10):
        journal.put(str(i), Completion(text="x"))
    # the journal's own thread syncs after the 4th and the 8th line (or once for both,
    # when it wakes late), never after each line
    deadline = time.monotonic() + 10
    while journal._unsynced >= 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert journal._unsynced < 4 and 1 <= len(synced) <= 2
    before = len(synced)
    journal.close()
    assert len(synced) == before + 1  # close syncs the rest
    with Journal(tmp_path / "j.journal") as again:
        assert len(again.entries) == 10


def test_journal_syncs_a_small_batch_after_sync_seconds(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    journal = Journal(tmp_path / "j.journal", sync_every=100, sync_seconds=0.2)
    journal.put("a", Completion(text="x"))
    time.sleep(0.1)
    journal.put("b", Completion(text="y"))
    assert synced == []
    deadline = time.monotonic() + 10
    while not synced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(synced) == 1 and journal._unsynced == 0
    journal.close()
