"""The Ray runner (plugins/rare-ray) on a real multi-process Ray cluster on 127.0.0.1.

The cluster is a head node and one more worker node, each its own ``ray start`` (see
tests/ray_cluster.py). The LLM endpoints are fault servers in their own processes, so that
they outlive a driver we kill and count every call, and the llama.cpp server for a run on
a real model. Every Ray run must give the local runner's files, byte for byte.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from fault_server import FaultServerProcess
from llama_server import N_CTX
from ray_cluster import RAY_ENV, LocalRayCluster, free_port

from rare.errors import MissingDependencyError, RunnerError, SettingsError
from rare.pipeline import Pipeline, Step, rare_steps
from rare.storage import read_records, write_records

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]

ROWS = 12
BLOCK = 3  # rows per block: four blocks per step
POOL = 2  # actors per LLM stage
WORKERS = 1  # calls in flight per actor
TEXT = "contents"


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = [r for r in read_records(shared("cacm", "cacm.jsonl")) if len(r[TEXT]) > 300]
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    write_records(path, rows[:ROWS])
    return path


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(head_cpus=2, worker_cpus=(1,)) as ray_cluster:
        yield ray_cluster


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two endpoints (the Ray runs spread their actors over both)."""
    with FaultServerProcess(tmp_path_factory.mktemp("server-a"), delay=0.05,
                            max_seconds=900) as a, \
            FaultServerProcess(tmp_path_factory.mktemp("server-b"), delay=0.05,
                               max_seconds=900) as b:
        yield a, b


def cli_args(corpus: Path, work: Path, urls: list[str], *extra: str) -> list[str]:
    args = [sys.executable, "-m", "rare.cli", "run", "--input", str(corpus),
            "--output", str(work / "out.jsonl"), "--model", "ray-test",
            "--text-key", TEXT, "--num-neg", "2", "--cache-dir", str(work / "cache"),
            "--batch-size", str(BLOCK), "-S", f"max_workers={WORKERS}", "-S", "max_retries=2",
            "-S", "timeout=20", "-S", "retry_backoff=0.05"]
    for url in urls:
        args += ["--api-url", url]
    return args + list(extra)


def ray_args(cluster: LocalRayCluster) -> list[str]:
    return ["--ray-address", cluster.address, "-X", f"pool_size={POOL}", "-X", "num_cpus=0.5",
            "-X", "actor_start_timeout=120"]


def env() -> dict[str, str]:
    import os

    return {**os.environ, **RAY_ENV}


def run_to_end(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def files(work: Path) -> dict[str, bytes]:
    """The output and every step file of a run."""
    found = {"out.jsonl": (work / "out.jsonl").read_bytes()}
    for path in sorted((work / "cache").glob("rare_cache_step_step*.jsonl")):
        found[path.name] = path.read_bytes()
    return found


def calls(*servers: FaultServerProcess) -> list[dict[str, Any]]:
    return [entry for server in servers for entry in server.stats()["log"]]


def reset(servers: tuple[FaultServerProcess, ...], delay: float) -> None:
    for server in servers:
        server.set_rules([], delay=delay)


@pytest.fixture(scope="module")
def reference(servers, corpus, tmp_path_factory) -> dict[str, bytes]:
    """The local runner's files, with one call per row and LLM stage."""
    work = tmp_path_factory.mktemp("local")
    reset(servers, 0.0)
    run_to_end(cli_args(corpus, work, [servers[0].chat_url], "--no-cache"))
    log = calls(*servers)
    assert len(log) == 2 * ROWS and len({e["key"] for e in log}) == 2 * ROWS
    out = files(work)
    assert len(out) == 4 and len(read_records(work / "out.jsonl")) == ROWS
    return out


# -- runs on the cluster ---------------------------------------------------------------------
def test_ray_run_equals_the_local_run(servers, cluster, corpus, reference, tmp_path):
    reset(servers, 0.05)
    work = tmp_path / "ray"
    urls = [s.chat_url for s in servers]
    proc = run_to_end(cli_args(corpus, work, urls, "--response-cache",
                               str(tmp_path / "responses"), *ray_args(cluster)))
    assert files(work) == reference  # output and step files, byte for byte
    assert "rows in 12, rows out 12" in proc.stdout
    for stage in ("Doc2Query", "BM25HardNeg", "ReasonDistill"):
        assert stage in proc.stdout and f"{stage}" in proc.stderr  # summary; progress bar
    # one call per row and LLM stage, spread over both endpoints
    per_server = [len(s.stats()["log"]) for s in servers]
    assert sum(per_server) == 2 * ROWS and all(per_server), per_server
    # the actors shared the response cache of the driver
    from rare.llm import ResponseCache

    cache = ResponseCache(tmp_path / "responses")
    try:
        assert len(cache) == 2 * ROWS
    finally:
        cache.close()
    # a finished run leaves no block folder and no journal behind
    assert not list((work / "cache").glob("*.blocks")) and not list(
        (work / "cache").glob("*.journal"))


def test_sigkill_of_the_driver_mid_stage_then_rerun(servers, cluster, corpus, reference,
                                                     tmp_path):
    reset(servers, 0.4)
    work = tmp_path / "killed"
    args = cli_args(corpus, work, [s.chat_url for s in servers], "--no-cache",
                    *ray_args(cluster))
    blocks = work / "cache" / "rare_cache_step_step1.jsonl.blocks"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env())
    try:
        deadline = time.monotonic() + 180
        # mid-stage: Doc2Query has finished a block and is working on others
        while not list(blocks.glob("block-*.rows")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr \
                else ""
            assert time.monotonic() < deadline, "no block finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    done_before = len(list(blocks.glob("block-*.rows")))
    assert 1 <= done_before < ROWS // BLOCK
    assert list(blocks.glob("block-*.journal")), "the blocks in flight keep journals"
    assert not (work / "out.jsonl").exists()
    # the killed driver's actors go with it
    deadline = time.monotonic() + 60
    while cluster.worker_pids():
        assert time.monotonic() < deadline, "the killed driver's actors are still alive"
        time.sleep(0.2)

    run_to_end(args)
    assert files(work) == reference
    log = calls(*servers)
    sent: dict[str, int] = {}
    for entry in log:
        sent[entry["key"]] = sent.get(entry["key"], 0) + 1
    assert len(sent) == 2 * ROWS
    # only a call in flight when the driver (and so its actors) died is made again
    again = [key for key, n in sent.items() if n > 1]
    assert len(log) - 2 * ROWS == sum(sent[k] - 1 for k in again) <= POOL * WORKERS, sent


def test_a_killed_actor_is_replaced(servers, cluster, corpus, reference, tmp_path):
    reset(servers, 0.4)
    work = tmp_path / "actor-killed"
    args = cli_args(corpus, work, [s.chat_url for s in servers], "--no-cache",
                    *ray_args(cluster))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
                            text=True)
    killed: int | None = None
    seen_after: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        # the last LLM stage: every actor that starts after the kill is a replacement
        while killed is None:
            assert proc.poll() is None, "the run ended before an actor could be killed"
            assert time.monotonic() < deadline, "ReasonDistill did not start"
            distill = [e for e in calls(*servers) if e["kind"] == "distill"]
            actors = cluster.worker_pids()
            if len(distill) >= 2 and actors:
                killed = actors[0]
                before = set(actors)
                import os

                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        while proc.poll() is None:
            seen_after.update(set(cluster.worker_pids()) - before)
            assert time.monotonic() < deadline + 120, "the run did not finish"
            time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-4000:]
    assert seen_after, "no actor replaced the killed one"
    assert files(work) == reference  # every block once, in order
    log = calls(*servers)
    keys = {e["key"] for e in log}
    assert len(keys) == 2 * ROWS
    assert len(log) - 2 * ROWS <= WORKERS  # only the killed actor's call in flight


def test_a_dead_endpoint_stops_the_run_with_the_servings_message(cluster, corpus, tmp_path):
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        cli_args(corpus, tmp_path, [f"http://127.0.0.1:{port}/v1/chat/completions"],
                 "--no-cache", "-S", "max_retries=0", *ray_args(cluster)),
        capture_output=True, text=True, timeout=300, env=env())
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: stopped: the last 3 calls to model 'ray-test' at "
                           f"http://127.0.0.1:{port}/v1/chat/completions all failed"), last
    assert last.endswith("running again resumes."), last  # Ray's own notes left out
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.jsonl").exists()


def test_three_stages_on_llama_cpp_equal_the_local_run(llama_server, cluster,  # noqa: F811
                                                        tmp_path, monkeypatch):
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    # Few rows and short replies: a call takes seconds on two shared cores.
    docs = read_records(shared("dataflow-examples", "eval_test_data.jsonl"))[:3]
    write_records(tmp_path / "docs.jsonl", docs)
    options = {"api_url": f"{llama_server}/chat/completions", "model_name": "smollm2",
               "max_workers": 1, "max_tokens": 96, "structured_output": "json_object",
               "context_window": N_CTX, "seed": 0, "temperature": 0.3}
    steps = rare_steps(TEXT, 2)
    steps[0].init.update(max_doc_tokens=192, max_attempts=1)
    steps[2].init.update(max_doc_tokens=96, max_attempts=1)

    # The Ray run asks the server and fills a response cache that the local run then reads:
    # llama.cpp's replies depend on the order requests reach it (it reuses the previous
    # prompt's prefix), so the two runs are compared on the same replies.
    responses = tmp_path / "responses"

    def pipeline(**runner: Any) -> Pipeline:
        pipe = Pipeline(steps, serving="openai", serving_options=options, batch_size=2,
                        **runner)
        assert pipe.serving is not None
        pipe.serving.use_cache(responses)
        return pipe

    first = pipeline()
    second = pipeline(runner="ray", runner_options={"address": cluster.address,
                                                   "pool_size": 2, "num_cpus": 0.5})
    try:
        report = second.run(tmp_path / "docs.jsonl", tmp_path / "ray.jsonl",
                            cache_path=tmp_path / "cache-ray")
        local = first.run(tmp_path / "docs.jsonl", tmp_path / "local.jsonl",
                          cache_path=tmp_path / "cache-local")
    finally:
        for pipe in (first, second):
            assert pipe.serving is not None
            pipe.serving.close()
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    for n in (1, 2, 3):
        name = f"rare_cache_step_step{n}.jsonl"
        assert (tmp_path / "cache-ray" / name).read_bytes() == \
            (tmp_path / "cache-local" / name).read_bytes(), name
    rows = read_records(tmp_path / "ray.jsonl")
    assert sum(r["question"] is not None for r in rows) >= 2
    assert sum(r["reasoning_raw"] is not None or r["reasoning"] is not None for r in rows) >= 1
    assert report.rows_in == report.rows_out == 3
    assert [s.name for s in report.stages] == ["Doc2Query", "BM25HardNeg", "ReasonDistill"]
    by_name = {s.name: s.stats for s in report.stages}
    assert all(by_name[name]["blocks"] == 2 for name in by_name)  # of 2 rows and 1 row
    assert by_name["BM25HardNeg"]["retriever"] == "tantivy"  # mined from the shared index
    assert report.usage["calls"] >= 5 and report.usage["completion_tokens"] > 0
    assert local.usage.get("calls", 0) == 0  # every reply the Ray run's actors got, reused
    assert local.usage["cache_hits"] == report.usage["calls"]


def test_row_warnings_and_failures_are_counted_as_the_local_run_counts_them(
        cluster, tmp_path, monkeypatch):
    """BM25HardNeg alone (no LLM): one row has no question (a failed row), and every row
    asks for more negatives than four documents can give (a shortfall warning)."""
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    rows = [r for r in read_records(shared("cacm", "cacm.jsonl")) if len(r[TEXT]) > 300][:4]
    for i, row in enumerate(rows):
        row["question"] = None if i == 1 else " ".join(row[TEXT].split()[:12])
    write_records(tmp_path / "docs.jsonl", rows)
    steps = [Step("BM25HardNeg", run={"input_text_key": TEXT, "num_neg": 5})]
    reports = {}
    for name, runner in (("local", {}),
                         ("ray", {"runner": "ray",
                                  "runner_options": {"address": cluster.address,
                                                     "pool_size": 2, "num_cpus": 0.5}})):
        reports[name] = Pipeline(steps, batch_size=2, **runner).run(
            tmp_path / "docs.jsonl", tmp_path / f"{name}.jsonl",
            cache_path=tmp_path / f"cache-{name}")
    local, ray_report = reports["local"], reports["ray"]
    assert local.failed_rows == ray_report.failed_rows == 1
    assert local.row_failures == ray_report.row_failures == {"skipped": 1}
    assert local.row_warnings == ray_report.row_warnings == {"shortfall": 3}
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


# -- without a cluster -----------------------------------------------------------------------
def test_an_unreachable_cluster_is_a_clear_error(corpus, tmp_path):
    port = free_port()  # nothing listens there
    pipe = Pipeline([Step("BM25HardNeg", run={"input_text_key": TEXT,
                                              "input_question_key": TEXT})],
                    runner="ray", runner_options={"address": f"127.0.0.1:{port}"})
    started = time.monotonic()
    with pytest.raises(RunnerError, match=rf"cannot reach the Ray cluster at "
                                          rf"'127.0.0.1:{port}'.*ray start --head"):
        pipe.run(corpus, tmp_path / "out.jsonl", cache_path=tmp_path / "cache")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out.jsonl").exists()
    proc = subprocess.run([sys.executable, "-m", "rare.cli", "run", "--input", str(corpus),
                           "--output", str(tmp_path / "out.jsonl"), "--api-url",
                           "http://127.0.0.1:9/v1/chat/completions", "--ray-address",
                           f"127.0.0.1:{port}", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_ray_gives_the_pip_line(monkeypatch):
    import importlib.util

    from rare_ray import RayRunner

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r'pip install "ray\[data\]"'):
        RayRunner()


def test_runner_settings_are_strict(tmp_path):
    steps = [Step("BM25HardNeg")]
    with pytest.raises(SettingsError, match=r"unknown setting 'pool_sise' for runner 'ray'.*"
                                            r"Did you mean 'pool_size'"):
        Pipeline(steps, runner="ray", runner_options={"pool_sise": 2})
    with pytest.raises(SettingsError, match=r"runner 'ray'.*num_gpus"):
        Pipeline(steps, runner="ray", runner_options={"num_gpus": "many"})
    with pytest.raises(SettingsError, match=r"unknown setting 'address' for runner 'local'"):
        Pipeline(steps, runner_options={"address": "x:1"})
    with pytest.raises(SettingsError, match=r"pool_size must be >= 1"):
        Pipeline(steps, runner="ray", runner_options={"pool_size": 0}).make_runner()
    # a [runner] section of a config is checked the same way
    from rare.cli import cli

    config = tmp_path / "rare.toml"
    config.write_text('[runner]\nname = "ray"\npool_sise = 2\n')
    proc = subprocess.run([sys.executable, "-m", "rare.cli", "run", "--config", str(config),
                           "--input", "x.jsonl", "--output", "y.jsonl"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "unknown setting 'pool_sise' for runner 'ray'" in \
        proc.stderr, proc.stderr
    assert cli is not None


def test_a_serving_object_cannot_travel_to_the_actors(corpus, tmp_path):
    from rare.serving import APILLMServing_request

    serving = APILLMServing_request(api_url="http://127.0.0.1:9/v1/chat/completions")
    pipe = Pipeline(rare_steps(TEXT), serving=serving, runner="ray")
    with pytest.raises(SettingsError, match=r"builds a serving in every actor"):
        pipe.run(corpus, tmp_path / "out.jsonl", cache_path=tmp_path / "cache")


def test_workers_that_cannot_see_the_driver_folders_say_so(tmp_path, caplog):
    """A worker on another node without the shared folders: no response cache, no journal,
    and a warning that says why and what to do."""
    from rare_ray.worker import BlockWorker, StageSpec

    from rare.storage import FileStorage

    storage = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache"))
    spec = StageSpec(step=1, operator="Doc2Query", init={}, run={"input_key": TEXT},
                     storage=storage, token="not-shared", takes_serving=True, uses_llm=True,
                     serving_name="openai",
                     serving_options={"api_url": "http://127.0.0.1:9/v1/chat/completions"},
                     response_cache=str(tmp_path / "responses"),
                     api_urls=["http://127.0.0.2:1/v1/chat/completions",
                               "http://127.0.0.3:1/v1/chat/completions"])
    with caplog.at_level("WARNING", logger="rare.ray"):
        worker = BlockWorker(spec)
    try:
        assert worker.serving.response_cache is None
        assert worker.journals is False
        assert worker.serving.api_url == "http://127.0.0.2:1/v1/chat/completions"
        text = caplog.text
        assert "response cache" in text and "is not visible from this node" in text
        assert "--no-cache" in text and "--cache-dir on a filesystem every node shares" in text
    finally:
        worker.close()
    # with the driver's marker files there, both are used
    for folder in (tmp_path / "responses", storage.blocks_path(1)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".rare-ray-shared").touch()
    spec.token = "shared"
    worker = BlockWorker(spec)
    try:
        assert worker.journals is True
        assert worker.serving.response_cache is not None
    finally:
        worker.close()


def test_bm25hardneg_shares_its_index_with_fresh_copies(corpus, tmp_path):
    """What the Ray runner's mining tasks do, in one process: the index prepared once into a
    folder; copies built from the returned settings mine each block as the prepared one."""
    from rare.operators import BM25HardNeg
    from rare.runner import checked_batches
    from rare.step import StepContext

    rows = read_records(corpus)
    for row in rows:
        row["question"] = " ".join(row[TEXT].split()[:12])
    run = {"input_text_key": TEXT, "num_neg": 2}
    local = BM25HardNeg()
    local.configure(**run)
    ctx = StepContext(source="docs")
    local.open(ctx)
    local.prepare(checked_batches(local, [rows[:5], rows[5:]], ctx), ctx)
    expected = local.transform([dict(r) for r in rows], StepContext(source="docs"))
    local.close()
    assert sum(len(r["hard_negatives"] or []) == 2 for r in expected) >= ROWS - 2

    prepared = BM25HardNeg(retriever="tantivy")
    settings = prepared.share_prepared(tmp_path / "prepared")
    assert settings is not None and settings["index_rows"] is False
    assert settings["retriever_options"]["path"] == str(tmp_path / "prepared" / "index")
    prepared.configure(**run)
    prepared.open(ctx)
    prepared.prepare(checked_batches(prepared, [rows[:7], rows[7:]], ctx), ctx)
    prepared.close()
    got = []
    for start in range(0, len(rows), 5):  # blocks, each by a copy of its own
        copy = BM25HardNeg(**settings)
        copy.configure(**run)
        block_ctx = StepContext(source="docs", start=start)
        copy.open(block_ctx)
        got += copy.transform([dict(r) for r in rows[start:start + 5]], block_ctx)
        copy.close()
    assert got == expected
    # a retriever object, or a backend that keeps its index in memory only: no sharing
    assert BM25HardNeg(retriever="gensim").share_prepared(tmp_path / "g") is None


def test_rare_plugins_lists_the_ray_runner():
    proc = subprocess.run([sys.executable, "-m", "rare.cli", "plugins", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = {p["name"]: p for p in json.loads(proc.stdout)}
    assert info["ray"]["registered"]["runners"] == ["ray"]
    assert info["ray"]["distribution"] == "rare-ray"
    assert info["rare.runner"]["registered"]["runners"] == ["local"]
