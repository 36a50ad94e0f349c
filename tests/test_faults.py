"""Faults of an OpenAI-compatible endpoint, driven through the real pipeline.

A fault-injecting chat-completions server on 127.0.0.1 (tests/fault_server.py) answers the
real openai client; every fault either heals within the bounded retries (the rows end up
complete) or leaves its rows failed with a short reason, counted in the run's report, while
the run goes on. An endpoint where every call fails stops the run early with one message
naming it. The last tests put the real llama.cpp server behind the same faults.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServer, scenario_marker

from rare.errors import ServingError
from rare.pipeline import Pipeline, RunReport, rare_steps
from rare.storage import read_records, write_records

#: retries and waits kept short; timeout leaves room for a busy machine
FAST: dict[str, Any] = {"max_retries": 2, "timeout": 2.0, "retry_backoff": 0.02,
                        "retry_backoff_max": 0.1, "max_workers": 4}
TEXT = "contents"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    rows = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))
    assert len(rows) == 10
    return rows


@pytest.fixture()
def server():
    with FaultServer() as srv:
        yield srv


def title(doc: dict[str, Any]) -> str:
    """The first line of a document: in its own Doc2Query prompt and nowhere else's."""
    return doc[TEXT].splitlines()[0]


def run_pipeline(url: str, tmp_path: Path, rows: list[dict[str, Any]],
                 d2q_attempts: int = 3, **options: Any) -> tuple[RunReport, list[dict]]:
    from rare.serving import APILLMServing_request

    write_records(tmp_path / "docs.jsonl", rows)
    serving = APILLMServing_request(api_url=url, model_name="fault-test", **{**FAST, **options})
    serving.use_cache(False)  # every call below reaches the server
    steps = rare_steps(TEXT, num_neg=2)
    steps[0].init["max_attempts"] = d2q_attempts
    try:
        report = Pipeline(steps, serving=serving, retriever="gensim").run(
            tmp_path / "docs.jsonl", tmp_path / "out.jsonl", cache_path=tmp_path / "cache")
    finally:
        serving.close()
    return report, read_records(tmp_path / "out.jsonl")


def complete(row: dict[str, Any]) -> bool:
    return (not any(v for k, v in row.items() if k.endswith("_error"))
            and bool(row["question"]) and bool(row["reasoning"])
            and row["reasoning"].rstrip().splitlines()[-1].startswith("Answer:"))


# -- transient faults: retried, and every row ends up complete -------------------------------
EVERY_FIRST_D2Q = {"kind": "doc2query", "times": 1, "per_prompt": True}
TRANSIENT = {
    "429 with Retry-After": ({"fault": "status", "status": 429, "headers": {"Retry-After": "1"},
                              "kind": "distill", "times": 3}, 3),
    "429 without Retry-After": ({"fault": "status", "status": 429, **EVERY_FIRST_D2Q}, 10),
    "500": ({"fault": "status", "status": 500, **EVERY_FIRST_D2Q}, 10),
    "502 twice per row": ({"fault": "status", "status": 502, "kind": "distill", "times": 2,
                           "per_prompt": True}, 20),
    "503 with retry-after-ms": ({"fault": "status", "status": 503,
                                 "headers": {"retry-after-ms": "30"}, **EVERY_FIRST_D2Q}, 10),
    "timeout": ({"fault": "sleep", "seconds": 4.0, "kind": "doc2query", "times": 2}, 2),
    "dropped connection": ({"fault": "drop", **EVERY_FIRST_D2Q}, 10),
    "malformed JSON body": ({"fault": "malformed", **EVERY_FIRST_D2Q}, 10),
    "HTML body": ({"fault": "non_json", "kind": "distill", "times": 1, "per_prompt": True}, 10),
    "empty choices": ({"fault": "empty_choices", **EVERY_FIRST_D2Q}, 10),
}


@pytest.mark.parametrize("http_client", ["openai", "aiohttp", "asyncio"])
@pytest.mark.parametrize("rule,extra", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_faults_are_retried_and_rows_complete(server, docs, tmp_path, rule, extra,
                                                        http_client):
    """Every HTTP transport meets every fault the same way."""
    server.set_rules([rule])
    start = time.monotonic()
    report, out = run_pipeline(server.chat_url, tmp_path, docs, http_client=http_client)
    elapsed = time.monotonic() - start
    stats = server.stats()
    assert all(complete(r) for r in out), [r for r in out if not complete(r)][:1]
    assert report.failures == {} and report.failed_rows == 0
    # one call per row and stage, plus exactly the retries the faults forced
    assert stats["calls"] == 2 * len(docs) + extra, stats["by_fault"]
    assert sum(v for k, v in stats["by_fault"].items() if k != "ok") == extra
    assert report.usage["calls"] == 2 * len(docs)
    assert report.usage["requests"] == stats["calls"]
    assert all(r["doc2query_attempts"] == 1 for r in out)  # healed inside the serving
    if "Retry-After" in rule.get("headers", {}):
        assert elapsed >= 1.0  # the server's wait was honoured
    if rule["fault"] == "sleep":
        assert stats["abandoned"] >= 1 or elapsed >= FAST["timeout"]


# -- persistent faults: the rows fail with a reason, the run goes on -------------------------
def test_persistent_http_errors_fail_their_rows_and_are_counted(server, docs, tmp_path):
    bad = [docs[2], docs[5]]
    server.set_rules([{"fault": "status", "status": 500, "kind": "doc2query",
                       "match": title(d)} for d in bad])
    report, out = run_pipeline(server.chat_url, tmp_path, docs)
    failed = [r for r in out if r["doc2query_error"]]
    assert [r["id"] for r in failed] == [d["id"] for d in bad]
    for row in failed:
        assert row["doc2query_error"].startswith("http_500: injected HTTP 500 (after 3 attempts)")
        assert row["question"] is None and row["doc2query_attempts"] == 1
        assert row["reasoning"] is None and row["reasoning_error"].startswith("skipped")
    assert sum(complete(r) for r in out) == 8
    assert report.failed_rows == 2
    # the serving retried (1 + 2 HTTP attempts); the stage does not ask again
    assert report.failures == {"http_500": 2}
    stats = server.stats()
    assert stats["by_fault"]["status"] == 6
    assert stats["calls"] == 6 + 8 + 8


PERSISTENT = {
    "timeout": ({"fault": "sleep", "seconds": 5.0}, "timeout", 2),
    "connection dropped": ({"fault": "drop"}, "connection", 2),
    "malformed JSON body": ({"fault": "malformed"}, "malformed_body", 2),
    "empty choices": ({"fault": "empty_choices"}, "empty_choices", 2),
    "429 asking for an hour": ({"fault": "status", "status": 429,
                                "headers": {"Retry-After": "3600"}}, "http_429", 1),
    "401": ({"fault": "status", "status": 401}, "http_401", 1),
    "null content": ({"fault": "no_content"}, "empty_reply", 1),
}


@pytest.mark.parametrize("http_client", ["openai", "asyncio"])
@pytest.mark.parametrize("rule,reason,http_attempts", PERSISTENT.values(),
                         ids=PERSISTENT.keys())
def test_persistent_faults_fail_rows_with_their_reason(server, docs, tmp_path, rule, reason,
                                                       http_attempts, http_client):
    bad = docs[4]
    server.set_rules([{**rule, "kind": "doc2query", "match": title(bad)}])
    report, out = run_pipeline(server.chat_url, tmp_path, docs, d2q_attempts=1,
                               max_retries=1, timeout=1.0, http_client=http_client)
    (failed,) = [r for r in out if r["doc2query_error"]]
    assert failed["id"] == bad["id"]
    assert failed["doc2query_error"].split(":")[0] == reason, failed["doc2query_error"]
    assert sum(complete(r) for r in out) == 9
    assert report.failures == {reason: 1}
    assert server.stats()["calls"] == http_attempts + 9 + 9
    if reason == "http_429":
        assert "more than max_retry_wait" in failed["doc2query_error"]


@pytest.mark.parametrize("fault", ["truncate", "useless"])
def test_useless_doc2query_replies_are_asked_again_then_fail(server, docs, tmp_path, fault):
    bad = docs[7]
    server.set_rules([{"fault": fault, "kind": "doc2query", "match": title(bad)}])
    report, out = run_pipeline(server.chat_url, tmp_path, docs)
    (failed,) = [r for r in out if r["doc2query_error"]]
    assert failed["id"] == bad["id"]
    assert failed["doc2query_error"].startswith("unusable reply")
    assert failed["doc2query_attempts"] == 3  # each attempt with another seed
    raw = failed["doc2query_raw"]
    assert raw == "I cannot help with that." if fault == "useless" else raw.startswith('{"q')
    assert sum(complete(r) for r in out) == 9
    assert server.stats()["calls"] == 3 + 9 + 9


def test_truncated_reasoning_is_flagged(server, docs, tmp_path):
    bad = docs[1]
    server.set_rules([{"fault": "truncate", "kind": "distill",
                       "match": "Scenario: " + scenario_marker(bad[TEXT])}])
    report, out = run_pipeline(server.chat_url, tmp_path, docs)
    (row,) = [r for r in out if r["id"] == bad["id"]]
    # a reply cut at max_tokens never counts as a complete row: either it is failed with a
    # reason, or it keeps finish_reason "length" for the export to drop
    assert row["reasoning_error"] or row["reasoning_finish_reason"] == "length"
    assert not complete(row)
    assert sum(complete(r) for r in out) == 9


def test_empty_reasoning_replies_fail_after_the_stage_retries(server, docs, tmp_path):
    bad = docs[3]
    server.set_rules([{"fault": "no_content", "kind": "distill",
                       "match": "Scenario: " + scenario_marker(bad[TEXT])}])
    report, out = run_pipeline(server.chat_url, tmp_path, docs)
    (row,) = [r for r in out if r["id"] == bad["id"]]
    assert row["reasoning"] is None and row["reasoning_error"].startswith("empty_reply")
    assert report.failures == {"empty_reply": 2}  # ReasonDistill asks twice
    assert server.stats()["calls"] == 10 + 9 + 2


# -- every call fails: stop early, one message that names the endpoint -----------------------
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_stops_the_run_early(docs, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1/chat/completions"
    start = time.monotonic()
    with pytest.raises(ServingError, match="all failed") as info:
        run_pipeline(url, tmp_path, docs)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert url in message and "connection" in message
    assert not (tmp_path / "cache" / "rare_cache_step_step1.jsonl").exists()


def test_every_call_failing_stops_before_the_next_stage(server, docs, tmp_path):
    server.set_rules([{"fault": "status", "status": 503}])
    with pytest.raises(ServingError, match=r"http_503: 10\)") as info:
        run_pipeline(server.chat_url, tmp_path, docs)
    assert server.chat_url in str(info.value)
    stats = server.stats()
    assert stats["by_kind"] == {"doc2query": stats["calls"]}  # ReasonDistill never ran
    assert stats["calls"] == 10 * 3  # one batch, each call with its 2 retries


def test_an_endpoint_that_dies_mid_run_stops_after_a_streak(server, tmp_path):
    rows = read_records(shared("cacm", "cacm.jsonl"))[:40]
    server.set_rules([{"fault": "none", "times": 6}, {"fault": "status", "status": 500}])
    with pytest.raises(ServingError, match=r"the last \d+ calls"):
        run_pipeline(server.chat_url, tmp_path, rows, max_workers=2)
    stats = server.stats()
    # 6 replies, then 10 failed calls (3 attempts each) and the few in flight by then; far
    # from the 34 x 3 x 3 it would take to grind through the rest of the corpus
    assert stats["by_fault"]["none"] == 6
    assert 30 <= stats["by_fault"]["status"] <= 60
    journal = tmp_path / "cache" / "rare_cache_step_step1.jsonl.journal"
    assert len(journal.read_text().splitlines()) == 6  # the finished replies are kept


def rare_run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rare.cli", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_args(url: str, tmp_path: Path, source: Path) -> list[str]:
    return ["--input", str(source), "--output", str(tmp_path / "out.jsonl"),
            "--api-url", url, "--model", "fault-test", "--retriever", "gensim",
            "--text-key", TEXT, "--num-neg", "2", "--cache-dir", str(tmp_path / "cache"),
            "--no-cache", "-S", "max_retries=2", "-S", "timeout=2", "-S", "retry_backoff=0.02",
            "-S", "max_workers=4"]


def test_rare_run_on_a_dead_endpoint_exits_with_one_clear_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1/chat/completions"
    source = shared("dataflow-examples", "eval_test_data.jsonl")
    proc = rare_run(*cli_args(url, tmp_path, source), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: stopped: the last 10 calls") and url in last, last
    assert "connection: 10" in last


def test_rare_run_summary_counts_failures_by_reason(server, docs, tmp_path):
    server.set_rules([{"fault": "status", "status": 500, "kind": "doc2query",
                       "match": title(docs[0])},
                      {"fault": "malformed", "kind": "doc2query", "match": title(docs[1])}])
    source = shared("dataflow-examples", "eval_test_data.jsonl")
    proc = rare_run(*cli_args(server.chat_url, tmp_path, source), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rows in 10, rows out 10, failed rows 2" in proc.stdout
    assert "failed calls by reason: http_500: 1, malformed_body: 1" in proc.stdout


# -- the real llama.cpp server, behind the same faults ---------------------------------------


@pytest.mark.slow
def test_llama_server_truncation_and_timeout(llama_server):
    from rare import ChatRequest
    from rare.serving import APILLMServing_request

    request = ChatRequest.from_prompt("Write a long story about a lighthouse keeper.",
                                      max_tokens=8, seed=0, temperature=0.0)
    serving = APILLMServing_request(api_url=f"{llama_server}/chat/completions",
                                    model_name="smollm2", max_workers=1, max_retries=0,
                                    timeout=60)
    serving.use_cache(False)
    (cut,) = serving.generate([request])
    assert cut.ok and cut.finish_reason == "length" and cut.completion_tokens == 8
    serving.close()

    hurried = APILLMServing_request(api_url=f"{llama_server}/chat/completions",
                                    model_name="smollm2", max_workers=1, max_retries=1,
                                    timeout=0.01, retry_backoff=0.01)
    hurried.use_cache(False)
    (late,) = hurried.generate([ChatRequest.from_prompt("Count to fifty.", max_tokens=200)],)
    hurried.close()
    assert late.error is not None and late.error.startswith("timeout"), late.error
    assert late.attempts == 2


@pytest.mark.slow
def test_llama_server_behind_injected_faults(llama_server, docs):
    from rare import ChatRequest
    from rare.serving import APILLMServing_request

    rules = [{"fault": "status", "status": 503, "times": 2},
             {"fault": "malformed", "times": 1},
             {"fault": "status", "status": 429, "headers": {"Retry-After": "1"}, "times": 1},
             {"fault": "empty_choices", "times": 1}]
    schema = {"type": "object", "properties": {"topic": {"type": "string", "maxLength": 60}},
              "required": ["topic"]}
    requests = [ChatRequest.from_prompt(f"Name the topic of this text as JSON: {d[TEXT][:300]}",
                                        json_schema=schema, max_tokens=32, seed=0)
                for d in docs[:4]]
    with FaultServer(rules, upstream=llama_server) as proxy:
        serving = APILLMServing_request(api_url=proxy.chat_url, model_name="smollm2",
                                        max_workers=2, max_retries=4, timeout=60,
                                        retry_backoff=0.05, temperature=0.0,
                                        structured_output="json_object")
        serving.use_cache(False)
        replies = serving.generate(requests)
        serving.close()
        stats = proxy.stats()
    assert all(r.ok for r in replies), [r.error for r in replies]
    assert all(json.loads(r.text or "")["topic"] is not None for r in replies)
    assert serving.failures == {}  # every injected fault healed
    assert stats["calls"] == 4 + 5 == serving.usage["requests"]
    assert stats["by_fault"] == {"status": 3, "malformed": 1, "empty_choices": 1, "ok": 4}
    assert sum(r.attempts for r in replies) == 9


@pytest.mark.slow
def test_llama_server_survives_the_doc2query_schema(llama_server):
    # llama.cpp turns a json_object schema into a grammar; the stage's maxLength of 1200 made
    # its grammar parser fail and the server die (SIGSEGV). The serving caps the lengths.
    from rare_stages.prompts import DOC2QUERY_SCHEMA

    from rare import ChatRequest
    from rare.serving import APILLMServing_request

    serving = APILLMServing_request(api_url=f"{llama_server}/chat/completions",
                                    model_name="smollm2", max_workers=1, max_retries=0,
                                    timeout=60, structured_output="json_object")
    serving.use_cache(False)
    (reply,) = serving.generate([ChatRequest.from_prompt(
        "Write a question about lighthouses.", json_schema=DOC2QUERY_SCHEMA, max_tokens=24)])
    serving.close()
    assert reply.ok, reply.error
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{llama_server}/models", timeout=5) as resp:
        assert resp.status == 200  # still alive


# -- pieces of the retry policy ---------------------------------------------------------------
def test_retry_after_headers_are_read_in_every_form():
    from email.utils import formatdate

    from rare_openai import retry_after_of

    assert retry_after_of({"retry-after-ms": "250"}) == 0.25
    assert retry_after_of({"retry-after": "2"}) == 2.0
    assert retry_after_of({"retry-after": "1.5", "retry-after-ms": "10"}) == 0.01
    in_a_minute = retry_after_of({"retry-after": formatdate(time.time() + 60, usegmt=True)})
    assert in_a_minute is not None and 55 < in_a_minute <= 60
    assert retry_after_of({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert retry_after_of({"retry-after": "soon"}) is None
    assert retry_after_of({}) is None and retry_after_of(None) is None


def test_json_object_schemas_are_capped_for_llama_cpp():
    import copy

    from rare_openai import JSON_OBJECT_MAX_LENGTH, cap_string_lengths
    from rare_stages.prompts import DOC2QUERY_SCHEMA

    schema = copy.deepcopy(DOC2QUERY_SCHEMA)
    schema["properties"]["scenario"]["maxLength"] = 1200
    capped = cap_string_lengths(schema, JSON_OBJECT_MAX_LENGTH)
    lengths = [p["maxLength"] for p in capped["properties"].values()]
    assert max(lengths) == JSON_OBJECT_MAX_LENGTH and 600 in lengths
    assert schema["properties"]["scenario"]["maxLength"] == 1200  # not mutated
    assert max(p["maxLength"] for p in DOC2QUERY_SCHEMA["properties"].values()) \
        <= JSON_OBJECT_MAX_LENGTH  # ours fits llama.cpp's grammar as it is
    assert cap_string_lengths([{"maxLength": 5000}], 10) == [{"maxLength": 10}]
