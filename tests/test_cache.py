"""The response cache: keyed by model, request and sampling settings; shared by threads,
processes and runs; ``--no-cache``, ``--response-cache`` and ``rare cache info/clear``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServer

from rare import ChatRequest
from rare.llm import Completion, ResponseCache, request_key
from rare.storage import read_records, write_records

ROWS = 8


@pytest.fixture()
def server():
    with FaultServer() as srv:
        yield srv


def serving(url: str, cache: Any, **options: Any):
    from rare.serving import APILLMServing_request

    opts = {"model_name": "cache-test", "max_workers": 4, "max_retries": 1, "timeout": 10.0,
            "retry_backoff": 0.02, **options}
    s = APILLMServing_request(api_url=url, **opts)
    s.use_cache(cache)
    return s


def ask(url: str, cache: Any, requests: list[ChatRequest], **options: Any) -> list[Completion]:
    s = serving(url, cache, **options)
    try:
        return s.generate(requests)
    finally:
        s.close()


PROMPTS = [ChatRequest.from_prompt(f"Explain topic {i}.", system="Be brief.") for i in range(6)]


# -- the key ----------------------------------------------------------------------------------
def test_the_key_covers_model_request_and_sampling_but_not_plumbing():
    base = serving("http://127.0.0.1:9/v1/chat/completions", False)
    key = request_key(base.settings(), PROMPTS[0])
    same = [serving("http://127.0.0.1:9/v1/chat/completions", False, max_workers=9,
                    timeout=3.0, max_retries=7, retry_backoff=2.0)]
    assert all(request_key(s.settings(), PROMPTS[0]) == key for s in same)
    others = [serving("http://127.0.0.1:9/v1/chat/completions", False, **change)
              for change in ({"model_name": "other"}, {"temperature": 0.7}, {"seed": 3},
                             {"max_tokens": 64}, {"structured_output": "json_object"})]
    others.append(serving("http://127.0.0.1:8/v1/chat/completions", False))
    keys = {request_key(s.settings(), PROMPTS[0]) for s in others}
    assert key not in keys and len(keys) == len(others)
    request_changes = [ChatRequest.from_prompt("Explain topic 0.", system="Be long."),
                       ChatRequest.from_prompt("Explain topic 0.", system="Be brief.", seed=1),
                       ChatRequest.from_prompt("Explain topic 0.", system="Be brief.",
                                               temperature=0.2),
                       ChatRequest.from_prompt("Explain topic 0.", system="Be brief.",
                                               json_schema={"type": "object"})]
    assert key not in {request_key(base.settings(), r) for r in request_changes}
    for s in [base, *same, *others]:
        s.close()


def test_the_key_is_the_hash_of_settings_and_every_request_field():
    # the key's recipe is a contract: caches and journals written earlier must still match
    import dataclasses
    import hashlib
    import json

    settings = {"class": "X", "model": "m", "temperature": 0.3, "seed": 0, "extra": {"a": [1]}}
    request = ChatRequest.from_prompt("Explain é.", system="Be brief.",
                                      json_schema={"type": "object"}, max_tokens=9, seed=2)
    payload = json.dumps({"settings": settings, "request": dataclasses.asdict(request)},
                         sort_keys=True, ensure_ascii=False, default=str)
    assert request_key(settings, request) == hashlib.sha256(payload.encode()).hexdigest()


def test_a_rerun_with_the_same_settings_makes_no_call(server, tmp_path):
    cache = tmp_path / "responses"
    first = ask(server.chat_url, cache, PROMPTS)
    assert server.stats()["calls"] == len(PROMPTS)
    assert not any(c.cached for c in first)
    again = ask(server.chat_url, cache, PROMPTS, max_workers=1, timeout=5.0)
    assert server.stats()["calls"] == len(PROMPTS)  # not one more
    assert all(c.cached for c in again)
    assert [c.text for c in again] == [c.text for c in first]
    # a different sampling setting or model is a miss
    ask(server.chat_url, cache, PROMPTS[:2], temperature=0.9)
    assert server.stats()["calls"] == len(PROMPTS) + 2
    ask(server.chat_url, cache, PROMPTS[:3], model_name="another-model")
    assert server.stats()["calls"] == len(PROMPTS) + 5


def test_failed_calls_are_not_cached(server, tmp_path):
    cache = tmp_path / "responses"
    server.set_rules([{"fault": "status", "status": 500, "match": "topic 1."}])
    first = ask(server.chat_url, cache, PROMPTS[:3])
    assert [c.ok for c in first] == [True, False, True]
    server.set_rules([])
    again = ask(server.chat_url, cache, PROMPTS[:3])
    assert all(c.ok for c in again) and [c.cached for c in again] == [True, False, True]
    assert server.stats()["calls"] == 1


def test_identical_requests_in_one_batch_are_sent_once(server, tmp_path):
    batch = [PROMPTS[i % 3] for i in range(12)]
    s = serving(server.chat_url, tmp_path / "responses", max_workers=6)
    replies = s.generate(batch)
    s.close()
    assert server.stats()["calls"] == 3
    assert [r.text for r in replies] == [replies[i % 3].text for i in range(12)]
    assert s.usage["calls"] == 3 and s.usage["duplicate_hits"] == 9


def test_an_empty_new_cache_directory_is_used(server, tmp_path):
    # regression: ``cache or None`` took an empty ResponseCache (len 0) for "no cache"
    s = serving(server.chat_url, tmp_path / "fresh")
    assert isinstance(s.response_cache, ResponseCache)
    s.generate(PROMPTS[:2])
    s.close()
    cache = ResponseCache(tmp_path / "fresh")
    assert len(cache) == 2
    cache.close()


def test_the_environment_can_turn_the_cache_off(server, monkeypatch):
    monkeypatch.setenv("RARE_NO_CACHE", "1")
    s = serving(server.chat_url, True)
    assert s.open_cache() is None
    s.close()


def test_default_cache_lives_under_rare_cache_dir(server):
    s = serving(server.chat_url, "default")
    s.generate(PROMPTS[:1])
    assert Path(s.response_cache.directory) == Path(os.environ["RARE_CACHE_DIR"]) / "responses"
    s.close()
    assert s.response_cache == "default"  # closed, reopened on next use


# -- several processes ------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from rare.llm import ResponseCache
    from rare.llm import Completion
    cache = ResponseCache(sys.argv[1])
    me = int(sys.argv[2])
    for i in range(150):
        key = f"k{(i + me * 50) % 300}"
        cache.put(key, Completion(text="reply " + key, prompt_tokens=i))
        got = cache.get(key)
        assert got is not None and got.text == "reply " + key, (key, got)
    cache.close()
""")


def test_several_processes_share_one_cache(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "shared"), str(n)],
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    cache = ResponseCache(tmp_path / "shared")
    assert len(cache) == 300
    assert all(cache.get(f"k{i}").text == f"reply k{i}" for i in range(300))  # type: ignore[union-attr]
    cache.close()


# -- through ``rare run`` ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))[:ROWS]
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    write_records(path, rows)
    return path


def rare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rare.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_args(url: str, corpus: Path, work: Path, *extra: str) -> list[str]:
    return ["run", "--input", str(corpus), "--output", str(work / "out.jsonl"), "--api-url", url,
            "--model", "cache-test", "--retriever", "gensim", "--text-key", "contents",
            "--num-neg", "2", "--cache-dir", str(work / "cache"), "-S", "max_workers=4",
            "-S", "max_retries=1", "-S", "retry_backoff=0.02", *extra]


def test_rare_run_reuses_the_cache_and_no_cache_calls_again(server, corpus, tmp_path):
    responses = str(tmp_path / "responses")
    first = rare(*run_args(server.chat_url, corpus, tmp_path / "a", "--response-cache",
                           responses), cwd=tmp_path)
    assert server.stats()["calls"] == 2 * ROWS
    assert f"LLM calls {2 * ROWS}," in first.stdout
    # a new work directory (no journal to resume from): every reply comes from the cache
    second = rare(*run_args(server.chat_url, corpus, tmp_path / "b", "--response-cache",
                            responses), cwd=tmp_path)
    assert server.stats()["calls"] == 2 * ROWS
    assert "LLM calls 0," in second.stdout
    expected = read_records(tmp_path / "a" / "out.jsonl")
    assert read_records(tmp_path / "b" / "out.jsonl") == expected
    # --no-cache asks the LLM again
    rare(*run_args(server.chat_url, corpus, tmp_path / "c", "--no-cache"), cwd=tmp_path)
    assert server.stats()["calls"] == 4 * ROWS
    assert read_records(tmp_path / "c" / "out.jsonl") == expected

    info = rare("cache", "info", "--dir", responses, cwd=tmp_path)
    assert f"{2 * ROWS} cached replies" in info.stdout
    cleared = rare("cache", "clear", "--dir", responses, cwd=tmp_path)
    assert f"removed {2 * ROWS} cached replies" in cleared.stdout
    assert "0 cached replies" in rare("cache", "info", "--dir", responses, cwd=tmp_path).stdout


def test_concurrent_runs_share_the_cache(server, corpus, tmp_path):
    responses = str(tmp_path / "responses")
    procs = [subprocess.Popen([sys.executable, "-m", "rare.cli",
                               *run_args(server.chat_url, corpus, tmp_path / f"w{n}",
                                         "--response-cache", responses)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for n in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    outputs = [read_records(tmp_path / f"w{n}" / "out.jsonl") for n in range(3)]
    assert outputs[0] == outputs[1] == outputs[2]
    calls = server.stats()["calls"]
    assert 2 * ROWS <= calls <= 3 * 2 * ROWS  # racing runs may each ask; none fails
    cache = ResponseCache(responses)
    assert len(cache) == 2 * ROWS  # every reply, once, whoever wrote it
    cache.close()


def test_rare_cache_info_defaults_to_the_shared_cache(tmp_path):
    out = rare("cache", "info", cwd=tmp_path).stdout
    assert str(Path(os.environ["RARE_CACHE_DIR"]) / "responses") in out
