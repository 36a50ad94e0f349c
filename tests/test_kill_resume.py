"""A kill costs only what was in flight: SIGKILL ``rare run`` many times, resume, count calls.

The endpoint is the fault server in its own process (it outlives the client and counts every
call), the response cache is off, so resuming rests on the steps' journals alone. A request
is in flight from the moment the executor takes it until its reply is in the journal, and
at most ``max_workers`` are; so over K kills the endpoint gets at most K * max_workers calls
more than an uninterrupted run, and the output is the same.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shared
from fault_server import FaultServerProcess

from rare.storage import read_records, write_records

ROWS = 40
WORKERS = 2
DELAY = 0.15  # seconds per call: the LLM stages take ~6 s in all
KILLS = 10

CLI = ("import runpy, sys; sys.argv[0] = 'rare'; "
       "runpy.run_module('rare.cli', run_name='__main__')")


def rare_args(url: str, corpus: Path, work: Path) -> list[str]:
    return [sys.executable, "-c", CLI, "run", "--input", str(corpus),
            "--output", str(work / "out.jsonl"), "--api-url", url, "--model", "kill-test",
            "--retriever", "gensim", "--text-key", "contents", "--num-neg", "2",
            "--cache-dir", str(work / "cache"), "--no-cache", "-S", f"max_workers={WORKERS}",
            "-S", "max_retries=2", "-S", "timeout=20", "-S", "retry_backoff=0.02"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = read_records(shared("cacm", "cacm.jsonl"))
    rows = [r for r in rows if len(r["contents"]) > 300][100:100 + ROWS]
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    write_records(path, rows)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with FaultServerProcess(tmp_path_factory.mktemp("server"), delay=DELAY,
                            max_seconds=600) as srv:
        yield srv


def run_to_end(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_kill_costs_at_most_the_calls_in_flight(server, corpus, tmp_path):
    server.reset()
    run_to_end(rare_args(server.chat_url, corpus, tmp_path / "reference"))
    reference = read_records(tmp_path / "reference" / "out.jsonl")
    needed = server.stats()["calls"]
    assert needed == 2 * ROWS

    server.reset()
    args = rare_args(server.chat_url, corpus, tmp_path / "killed")
    rng = random.Random(20251122)
    kills, step = 0, needed // (KILLS + 2)
    calls_at_kill: list[int] = []
    for _ in range(KILLS):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # a few calls further on each time, then a random moment: mid-call, mid-write,
            # between calls, or while the next stage starts
            target = server.stats()["calls"] + max(2, step + rng.randint(-2, 2))
            deadline = time.monotonic() + 60
            while server.stats()["calls"] < target and proc.poll() is None:
                assert time.monotonic() < deadline, "the client made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 2 * DELAY))
        finally:
            alive = proc.poll() is None
            proc.kill()
            proc.wait(timeout=30)
        if not alive:
            break  # it finished before we could kill it
        kills += 1
        calls_at_kill.append(server.stats()["calls"])
    assert kills >= KILLS - 2, kills

    run_to_end(args)
    assert read_records(tmp_path / "killed" / "out.jsonl") == reference
    stats = server.stats()
    sent: dict[str, int] = {}
    for entry in stats["log"]:
        sent[entry["key"]] = sent.get(entry["key"], 0) + 1
    assert len(sent) == needed  # the same requests as the uninterrupted run, no others
    repeated = stats["calls"] - needed
    assert repeated <= kills * WORKERS, (repeated, kills, calls_at_kill)

