"""vLLM in process (``LocalModelLLMServing``), for real: vLLM's CPU build running
SmolLM2-135M-Instruct converted from the embedded model's GGUF (``make test-vllm`` sets up
both in their own virtual environment, ``.venv-vllm``). One engine serves every test of a
run: servings with equal engine settings share it.

Where vLLM is not installed (the main environment) the module skips with that reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, shared

from rare import ChatRequest
from rare.errors import ServingError
from rare.report import first_error
from rare.storage import read_records, write_records

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test-vllm` runs these "
                                   "tests in their own environment (.venv-vllm)")
pytestmark = pytest.mark.slow

MODEL = Path(os.environ.get("RARE_VLLM_MODEL",
                            REPO / ".venv-vllm" / "models" / "SmolLM2-135M-Instruct")).resolve()
MAX_MODEL_LEN = 2048
REPLY = 384  # tokens per reply: enough for a question or a short reasoning on a CPU
# 1 GiB of KV cache: plenty for 2048-token sequences of a 135M model, on any machine
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

SCRIPT = REPO / "tests" / "scripts" / "rare_pipeline_local_gpu.py"


def serving(**options: Any):  # type: ignore[no-untyped-def]
    from rare.serving import LocalModelLLMServing

    settings = {"hf_model_name_or_path": str(MODEL), "vllm_max_model_len": MAX_MODEL_LEN,
                "vllm_max_tokens": REPLY, **options}
    return LocalModelLLMServing(**settings)


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """The run's one engine: held open by this serving until the session ends."""
    if not (MODEL / "config.json").is_file():
        pytest.skip(f"{MODEL} is missing: `make test-vllm` converts it "
                    "(python -m rare_vllm.gguf_to_hf)")
    holder = serving()
    holder.start_serving()
    yield holder
    holder.close()


def test_the_names_users_know(engine):
    from rare.serving import LocalModelLLMServing, LocalModelLLMServing_vllm, create

    assert LocalModelLLMServing is LocalModelLLMServing_vllm
    again = create("vllm", model=str(MODEL), max_model_len=MAX_MODEL_LEN)
    assert isinstance(again, LocalModelLLMServing_vllm)
    assert again.engine is engine.engine  # equal engine settings: the same engine
    again.close()
    assert engine.engine is not None  # the holder still has it


def test_tokens_come_from_the_models_own_tokenizer(engine):
    text = shared("dataflow-examples", "pipeline_small_chunk.json").read_text()[:6000]
    vllm_tokenizer = engine.engine.get_tokenizer()
    assert engine.count_tokens(text) == len(vllm_tokenizer.encode(text,
                                                                  add_special_tokens=False))
    cut, was_cut = engine.truncate(text, 200)
    assert was_cut and 195 <= engine.count_tokens(cut) <= 200
    assert text.startswith(cut[:200])
    assert engine.context_window == MAX_MODEL_LEN


def test_a_batch_goes_to_the_engine_in_one_call(engine, tmp_path):
    spy = serving(vllm_seed=7)
    spy.use_cache(False)
    calls: list[int] = []
    real = spy.generate_tokens
    spy.generate_tokens = lambda prompts: calls.append(len(prompts)) or real(prompts)  # type: ignore[method-assign]
    too_long = "anatomy " * 2500
    requests = [ChatRequest.from_prompt(f"Name one bone of the human {part}.", max_tokens=24)
                for part in ("hand", "foot", "skull", "arm", "leg", "spine")]
    requests.insert(3, ChatRequest.from_prompt(too_long))
    out = spy.generate(requests)
    spy.close()
    assert calls == [6]  # the six that fit, in one engine call
    assert out[3].error is not None and out[3].error.startswith("context_overflow")
    assert "vllm_max_model_len" in out[3].error
    assert all(c.ok and c.text for i, c in enumerate(out) if i != 3)
    assert all(0 < c.completion_tokens <= 24 for i, c in enumerate(out) if i != 3)


def test_json_comes_from_guided_decoding(engine):
    schema = {"type": "object", "required": ["question", "scenario"],
              "properties": {"question": {"type": "string", "pattern": "^[A-Z][^?]{8,120}\\?$"},
                             "scenario": {"type": "string", "maxLength": 160}}}
    requests = [ChatRequest.from_prompt(f"About the {topic}: write a question.",
                                        json_schema=schema, max_tokens=200)
                for topic in ("heart", "lungs", "liver", "kidneys")]
    engine.use_cache(False)
    for reply in engine.generate(requests):
        assert reply.ok, reply.error
        data = json.loads(reply.text)  # a 135M model writes JSON only when made to
        assert set(data) == {"question", "scenario"}
        assert data["question"][0].isupper() and data["question"].endswith("?")


def test_an_engine_that_cannot_start_names_the_setting(engine):
    bad = serving(vllm_max_model_len=10 ** 6)  # far beyond the model's own window
    with pytest.raises(ServingError, match="vllm_max_model_len"):
        bad.start_serving()
    bad.close()
    with pytest.raises(ServingError, match="hf_model_name_or_path"):
        serving(hf_model_name_or_path=str(MODEL.parent / "no-such-model"))


def run_reference_script(work: Path) -> dict[str, Any]:
    """The user's script, run as ``python script.py`` would, in ``work``."""
    folder = work / "dataflow" / "example" / "RAREPipeline"
    folder.mkdir(parents=True)
    shutil.copy(shared("dataflow-examples", "pipeline_small_chunk.json"), folder)
    cwd = Path.cwd()
    os.chdir(work)
    try:
        return runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        os.chdir(cwd)


def test_the_reference_script_runs_on_the_local_engine(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("RARE_LOCAL_MODEL", str(MODEL))
    monkeypatch.setenv("RARE_LOCAL_MAX_TOKENS", str(REPLY))
    monkeypatch.setenv("RARE_LOCAL_MAX_MODEL_LEN", str(MAX_MODEL_LEN))
    first = run_reference_script(tmp_path / "a")["model"].llm_serving
    rows = json.loads((tmp_path / "a" / "cache_local" / "dataflow_cache_step_step3.json").read_text())
    assert len(rows) == 10
    for row in rows:  # every row complete, or marked with the reason
        assert bool(row.get("reasoning")) != (first_error(row) is not None), row
    questions = [r["question"] for r in rows if r.get("question")]
    assert len(questions) >= 8  # guided JSON: replies parse
    assert all(q.strip().endswith("?") for q in questions)
    assert first.usage["calls"] > 0
    assert first.engine is engine.engine

    # the same script again, elsewhere: the replies come from the response cache.
    again = run_reference_script(tmp_path / "b")["model"].llm_serving
    rerun = json.loads((tmp_path / "b" / "cache_local" / "dataflow_cache_step_step3.json")
                       .read_text())
    seen = (dict(first.usage), dict(first.failures), dict(again.usage), dict(again.failures))
    # The first stage asks the same requests both times: its good replies are reused as they
    # were.
    assert len(rerun) == len(rows)
    assert all(b.get("question") == a["question"] for a, b in zip(rows, rerun)
               if a.get("question")), seen
    failed = sum(first.failures.values())
    if failed == 0:
        assert again.usage["calls"] == 0, seen
        assert again.usage["cache_hits"] == first.usage["calls"], seen
        assert [r.get("reasoning") for r in rerun] == [r.get("reasoning") for r in rows]
    else:
        # Only good replies are cached, so each failed request is asked again; on the CPU
        # build (no per-request seeds) its new reply may work and change what later
        # samples ask, so only the reuse is checked.
        assert again.usage["calls"] >= failed, seen
        assert again.usage["cache_hits"] >= len(questions), seen


KILLED_RUN = """
import sys
from rare.pipeline import Pipeline, rare_steps
from rare.serving import LocalModelLLMServing

if __name__ == "__main__":
    corpus, out, cache, model = sys.argv[1:5]
    serving = LocalModelLLMServing(hf_model_name_or_path=model, vllm_max_model_len={ctx},
                                   vllm_max_tokens={reply}, batch_size=2)
    serving.use_cache(False)
    Pipeline(rare_steps("text", num_neg=2), serving=serving).run(corpus, out,
                                                                  cache_path=cache)
"""


def journal_lines(cache: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in cache.glob("*.journal"))


def test_a_killed_run_resumes_without_asking_again(engine, tmp_path):
    rows = json.loads(shared("dataflow-examples", "pipeline_small_chunk.json").read_text())
    corpus = tmp_path / "docs.jsonl"
    write_records(corpus, [{"text": r["text"][:1500]} for r in rows[:6]])
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache"
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(ctx=MAX_MODEL_LEN, reply=REPLY))
    proc = subprocess.Popen([sys.executable, str(script), str(corpus), str(out), str(cache),
                             str(MODEL)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 420
        while journal_lines(cache) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no reply was journaled in 7 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the engine's processes too
        proc.wait()
    assert not out.exists()
    journaled = journal_lines(cache)
    assert journaled >= 2

    from rare.pipeline import Pipeline, rare_steps

    resumed = serving(batch_size=2)
    resumed.use_cache(False)
    Pipeline(rare_steps("text", num_neg=2), serving=resumed).run(corpus, out, cache_path=cache)
    assert resumed.usage["journal_hits"] == journaled  # every journaled reply reused
    assert resumed.usage["calls"] > 0
    resumed.close()
    done = read_records(out)
    assert len(done) == 6
    assert all(bool(r.get("reasoning")) != (first_error(r) is not None) for r in done)


def test_rare_run_with_serving_vllm(engine, tmp_path):
    """The command line and a TOML config name the serving ``vllm``; settings given as
    ``-S KEY=VALUE`` strings are typed by the serving's signature."""
    from click.testing import CliRunner

    from rare.cli import cli

    rows = json.loads(shared("dataflow-examples", "pipeline_small_chunk.json").read_text())
    corpus = tmp_path / "docs.jsonl"
    write_records(corpus, [{"text": r["text"][:1200]} for r in rows[:3]])
    args = ["run", "--input", str(corpus), "--output", str(tmp_path / "out.jsonl"),
            "--serving", "vllm", "-S", f"model={MODEL}", "-S", f"max_model_len={MAX_MODEL_LEN}",
            "-S", "max_tokens=200", "--num-neg", "1", "--no-grounding", "--no-cache",
            "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    done = read_records(tmp_path / "out.jsonl")
    assert len(done) == 3
    assert all(bool(r.get("reasoning")) != (first_error(r) is not None) for r in done)
    assert sum(bool(r.get("question")) for r in done) >= 2

    config = tmp_path / "run.toml"
    config.write_text(f'[serving]\nname = "vllm"\nmodel = "{MODEL}"\n'
                      f'max_model_len = {MAX_MODEL_LEN}\ntypo_setting = 1\n')
    bad = CliRunner().invoke(cli, ["run", "--config", str(config), "--input", str(corpus),
                                   "--output", str(tmp_path / "bad.jsonl")])
    assert bad.exit_code != 0 and "typo_setting" in bad.output
    assert not (tmp_path / "bad.jsonl").exists()


def test_close_releases_the_engine_and_its_processes(engine):
    """A serving with its own engine settings gets its own engine; its ``close()`` stops it
    (the engine's worker processes end), and the shared engine stays up."""
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    own = serving(engine_options={"max_num_seqs": 4})
    assert own.generate([ChatRequest.from_prompt("Say hi.", max_tokens=4)])[0].ok
    assert own.engine is not engine.engine
    started = {p.pid for p in me.children(recursive=True)} - before
    assert started, "the engine started no process of its own"
    own.close()

    def running(p: psutil.Process) -> bool:  # an exited process not yet reaped has ended
        try:
            return p.pid in started and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 60
    while alive := [p for p in me.children(recursive=True) if running(p)]:
        if time.monotonic() > deadline:
            names = []
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    names.append(f"{p.pid} {p.status()} {' '.join(p.cmdline())[:200]}")
            raise AssertionError(f"the engine's processes outlived close(): {names}")
        time.sleep(0.5)
    assert engine.generate([ChatRequest.from_prompt("Say yes.", max_tokens=4)])[0].ok
