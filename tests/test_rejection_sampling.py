"""Grounded rejection sampling in ReasonDistill, driven through the real pipeline.

First against the fault server (deterministic replies that cite the positive, with rules
that make chosen rows cite a negative or give a chosen answer), so every call can be
counted; then against the real llama.cpp server, killed and resumed.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServer, FaultServerProcess, scenario_marker
from rare_stages.grounding import classify

from rare.pipeline import Pipeline, RunReport, rare_steps
from rare.storage import read_records, write_records

TEXT = "contents"
FAST: dict[str, Any] = {"max_retries": 2, "timeout": 5.0, "retry_backoff": 0.02,
                        "retry_backoff_max": 0.1, "max_workers": 4}


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    rows = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))
    assert len(rows) == 10
    return rows


@pytest.fixture()
def server():
    with FaultServer() as srv:
        yield srv


def run_pipeline(url: str, tmp_path: Path, rows: list[dict[str, Any]],
                 distill_init: dict[str, Any] | None = None,
                 distill_run: dict[str, Any] | None = None) -> tuple[RunReport, list[dict]]:
    from rare.serving import APILLMServing_request

    write_records(tmp_path / "docs.jsonl", rows)
    serving = APILLMServing_request(api_url=url, model_name="grounding-test", **FAST)
    serving.use_cache(False)  # every call below reaches the server
    steps = rare_steps(TEXT, num_neg=2)
    steps[2].init.update(distill_init or {})
    steps[2].run.update(distill_run or {})
    try:
        report = Pipeline(steps, serving=serving, retriever="gensim").run(
            tmp_path / "docs.jsonl", tmp_path / "out.jsonl", cache_path=tmp_path / "cache")
    finally:
        serving.close()
    return report, read_records(tmp_path / "out.jsonl")


def distill_calls(stats: dict[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    """(seed, temperature) of every ReasonDistill call, by the row's scenario."""
    calls: dict[str, list[tuple[Any, Any]]] = collections.defaultdict(list)
    for entry in sorted(stats["log"], key=lambda e: e["t0"]):
        if entry["kind"] == "distill":
            calls[entry["scenario"]].append((entry["seed"], entry["temperature"]))
    return calls


def row_of(out: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    (row,) = [r for r in out if r["id"] == doc["id"]]
    return row


def test_asks_again_only_for_ungrounded_rows_and_stops_at_max_samples(server, docs,
                                                                       tmp_path):
    healed, hopeless = docs[2], docs[5]
    server.set_rules([
        {"fault": "ungrounded", "kind": "distill", "times": 2,
         "match": "Scenario: " + scenario_marker(healed[TEXT])},
        {"fault": "ungrounded", "kind": "distill",
         "match": "Scenario: " + scenario_marker(hopeless[TEXT])},
    ])
    report, out = run_pipeline(server.chat_url, tmp_path, docs, {"max_samples": 3})
    calls = distill_calls(server.stats())
    assert sum(map(len, calls.values())) == 10 + 2 + 2
    for row in out:
        mine = calls[row["scenario"]]
        assert row["reasoning_samples"] == len(mine)
        # each sample has its own seed; the later ones at the sampling temperature
        assert [seed for seed, _ in mine] == list(range(len(mine)))
        assert all(t == 0.95 for _, t in mine[1:])
        assert row["reasoning_error"] is None
        assert row["reasoning_cited"] and row["reasoning_answer"]
        if row["id"] == hopeless["id"]:
            assert row["reasoning_samples"] == 3 and row["reasoning_grounded"] is False
            assert row["reasoning_positive_label"] not in row["reasoning_cited"]
            continue
        assert row["reasoning_grounded"] is True
        assert row["reasoning_cited"] == [row["reasoning_positive_label"]]
        assert row["reasoning_samples"] == (3 if row["id"] == healed["id"] else 1)
        # the documents as the teacher saw them, in order, with the positive where recorded
        docs_seen = row["reasoning_documents"]
        assert len(docs_seen) == 3 and sorted(row["reasoning_order"]) == [0, 1, 2]
        assert row[TEXT].startswith(docs_seen[row["reasoning_positive_index"]][:200])
    stage = report.stages[2].stats
    assert (stage["judged"], stage["grounded"], stage["samples"]) == (10, 9, 14)


def test_grounding_off_keeps_the_first_reply(server, docs, tmp_path):
    hopeless = docs[5]
    server.set_rules([{"fault": "ungrounded", "kind": "distill",
                       "match": "Scenario: " + scenario_marker(hopeless[TEXT])}])
    report, out = run_pipeline(server.chat_url, tmp_path, docs, {"grounding": False})
    assert server.stats()["by_kind"]["distill"] == 10
    row = row_of(out, hopeless)
    assert row["reasoning_grounded"] is None and row["reasoning_samples"] == 1
    assert row["reasoning_cited"] != [row["reasoning_positive_label"]]


def test_gold_answer_accepts_and_rejects(server, docs, tmp_path):
    rows = [dict(d, gold="Paris") for d in docs[:4]]
    late, never, wrong_key = rows[1], rows[2], rows[3]
    wrong_key["gold"] = "Lyon, France"
    marker = {r["id"]: "Scenario: " + scenario_marker(r[TEXT]) for r in rows}
    server.set_rules([
        {"fault": "answer", "answer": "Lyon", "kind": "distill", "times": 1,
         "match": marker[late["id"]]},
        {"fault": "answer", "answer": "Lyon", "kind": "distill", "match": marker[never["id"]]},
        {"fault": "answer", "answer": "lyon (france).", "kind": "distill",
         "match": marker[wrong_key["id"]]},
        {"fault": "answer", "answer": "Paris", "kind": "distill"},
    ])
    report, out = run_pipeline(server.chat_url, tmp_path, rows, {"max_samples": 3},
                               {"input_answer_key": "gold"})
    by_id = {r["id"]: r for r in out}
    first = by_id[rows[0]["id"]]
    assert first["reasoning_answer_match"] is True and first["reasoning_samples"] == 1
    assert by_id[late["id"]]["reasoning_answer_match"] is True
    assert by_id[late["id"]]["reasoning_samples"] == 2
    assert by_id[late["id"]]["reasoning_answer"].startswith("Paris")
    rejected = by_id[never["id"]]
    assert rejected["reasoning_answer_match"] is False and rejected["reasoning_samples"] == 3
    assert rejected["reasoning_grounded"] is True  # cites the positive, wrong answer
    assert by_id[wrong_key["id"]]["reasoning_answer_match"] is True  # normalised match
    assert report.stages[2].stats["grounded"] == 3


def test_custom_answer_checker(server, docs, tmp_path):
    server.set_rules([{"fault": "answer", "answer": "Paris", "kind": "distill"}])
    rows = [dict(d, gold="Paris") for d in docs[:2]]
    _, out = run_pipeline(server.chat_url, tmp_path, rows,
                          {"max_samples": 2, "answer_checker": "operator:eq"},
                          {"input_answer_key": "gold"})
    # operator.eq(answer, gold) is exact: "Paris [Document N]" is not "Paris", so the
    # default normalised match would accept what this checker rejects, twice per row
    assert all(r["reasoning_answer_match"] is False and r["reasoning_samples"] == 2
               for r in out)


# -- the real llama.cpp server, behind a counting proxy; killed and resumed ----------------
CLI = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "sys.argv[0] = 'rare'; runpy.run_module('rare.cli', run_name='__main__')")


@pytest.mark.slow
def test_rejection_sampling_on_llama_server_resumes_after_a_kill(tmp_path, llama_server):
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate([
        "The mitochondrion produces most of the cell's ATP through oxidative "
        "phosphorylation, using oxygen as the final electron acceptor.",
        "Photosynthesis in chloroplasts turns light, water and carbon dioxide into glucose "
        "and oxygen; the light reactions happen in the thylakoid membranes.",
        "Ribosomes translate messenger RNA into proteins, reading three bases at a time and "
        "matching each codon with the anticodon of a transfer RNA.",
        "The Golgi apparatus modifies, sorts and packages proteins from the endoplasmic "
        "reticulum for secretion or delivery to other organelles.",
    ])]
    write_records(tmp_path / "docs.jsonl", rows)
    out_path = tmp_path / "out.jsonl"
    with FaultServerProcess(tmp_path / "proxy", upstream=llama_server,
                            max_seconds=900) as proxy:
        args = [sys.executable, "-c", CLI, "run", "--input", str(tmp_path / "docs.jsonl"),
                "--output", str(out_path), "--api-url", proxy.chat_url, "--model", "smollm2",
                "-S", "structured_output=json_object", "-S", "context_window=2048",
                "-S", "max_tokens=256", "-S", "temperature=0.3", "-S", "timeout=300",
                "--retriever", "gensim", "--num-neg", "2", "--max-samples", "3",
                "--cache-dir", str(tmp_path / "cache"), "--no-cache"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        # kill once ReasonDistill has made a few calls
        while proc.poll() is None and proxy.stats()["by_kind"].get("distill", 0) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.kill()
        proc.wait(timeout=30)
        assert not out_path.exists()
        done = subprocess.run(args, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        stats = proxy.stats()
    out = read_records(out_path)
    assert len(out) == 4
    expected = sum(r["doc2query_attempts"] for r in out) + sum(r["reasoning_samples"]
                                                               for r in out)
    # every call was made once; only a call cut off by the kill may have been made twice
    assert expected <= stats["calls"] <= expected + stats["abandoned"] + 1
    replies: dict[str, dict[int, tuple[str, str]]] = collections.defaultdict(dict)
    for entry in stats["log"]:
        if entry["kind"] == "distill" and "reply" in entry:
            replies[entry["scenario"]][entry["seed"]] = (entry["reply"], entry["finish"])
    for row in out:
        if row["reasoning_samples"] == 0:
            assert row["reasoning_error"], row
            continue
        mine = replies[row["scenario"]]
        # the samples of a row are seeds 0, 1, ...: none asked twice, none skipped
        assert sorted(mine) == list(range(row["reasoning_samples"])), (row, sorted(mine))
        verdicts = []
        for seed in sorted(mine):
            text, finish = mine[seed]
            usable = finish != "length" and bool(text.strip())
            verdicts.append(usable and classify(text, row["reasoning_positive_index"],
                                                len(row["reasoning_documents"])).grounded)
        # asked again only after an ungrounded (or unusable) reply, never after a grounded
        assert not any(verdicts[:-1]), (row["id"], verdicts)
        if row["reasoning_grounded"]:
            assert verdicts[-1] and row["reasoning"] == mine[len(mine) - 1][0].strip()
            assert row["reasoning_positive_label"] in row["reasoning_cited"]
        else:
            # no grounded reply: the budget was spent, or the replies were unusable twice
            assert row["reasoning_samples"] == 3 or row["reasoning_samples"] == 2 and \
                sum(f == "length" for _, f in mine.values()) == 2, (row["id"], mine)
    summary = [line for line in done.stdout.splitlines() if "ReasonDistill: grounded" in line]
    grounded = sum(r["reasoning_grounded"] is True for r in out)
    judged = sum(r["reasoning_grounded"] is not None for r in out)
    samples = sum(r["reasoning_samples"] for r in out)
    if judged:
        assert summary and f"grounded {grounded} of {judged}" in summary[0]
        assert f"samples {samples}," in summary[0]
