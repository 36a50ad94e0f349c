"""A serving that implements only ``complete_batch``, as an in-process engine does (vLLM,
SGLang, llama.cpp), runs Doc2Query, BM25HardNeg and ReasonDistill with the response cache
and resume working: the executor hands it every request that journal, cache and
de-duplication left over, in chunks of ``batch_size``.

The engine is the embedded model (SmolLM2-135M on llama.cpp, in this process).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import shared

from rare import ChatRequest, Completion, LLMServing
from rare.pipeline import Pipeline, rare_steps
from rare.storage import read_records, write_records

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow  # a real model, three stages, three runs (a minute)

ROWS = 3
N_CTX = 4096
REPLY = 64  # short replies keep the test to a minute; truncated ones fail their rows


@pytest.fixture(scope="module")
def llama() -> Any:
    from llama_cpp import Llama
    from rare_embedded import find_model_file

    model = Llama(model_path=str(find_model_file()), n_ctx=N_CTX, n_threads=2, seed=0,
                  verbose=False)
    yield model
    model.close()


_ENGINE = threading.Lock()


class LlamaBatchServing(LLMServing):
    """llama.cpp in this process, a whole batch per call; greedy, so replies repeat."""

    def __init__(self, llama: Any, batch_size: int = 2, interrupt_at: int | None = None
                 ) -> None:
        super().__init__(model_name="SmolLM2-135M-Instruct", temperature=0.0,
                         max_tokens=REPLY, seed=0)
        self.llama = llama
        self.context_window = N_CTX
        self.batch_size = batch_size
        self.interrupt_at = interrupt_at  # Ctrl-C while this batch (1-based) runs
        self.batches: list[int] = []

    def complete_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        with _ENGINE:  # one llama.cpp context: a batch left running by a Ctrl-C ends first
            return self._complete_batch(requests)

    def _complete_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        from llama_cpp import LlamaGrammar
        from rare_embedded import grammar_for

        self.batches.append(len(requests))
        if self.interrupt_at == len(self.batches):
            main = threading.main_thread().ident
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)
        out = []
        for request in requests:
            kwargs: dict[str, Any] = {}
            gbnf = grammar_for(short_strings(request.json_schema)) if request.json_schema \
                else None
            if gbnf is not None:
                kwargs["grammar"] = LlamaGrammar.from_string(gbnf, verbose=False)
            self.llama.reset()  # no reuse of the last prompt's cache: the same reply each time
            reply = self.llama.create_chat_completion(
                messages=request.messages, max_tokens=min(request.max_tokens or REPLY, REPLY),
                temperature=0.0, seed=0, repeat_penalty=1.15, **kwargs)
            choice = reply["choices"][0]
            text = choice["message"].get("content") or None
            out.append(Completion(text=text, finish_reason=choice.get("finish_reason"),
                                  prompt_tokens=reply["usage"]["prompt_tokens"],
                                  completion_tokens=reply["usage"]["completion_tokens"],
                                  error=None if text else "empty_reply: no text"))
        return out


def short_strings(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with strings of at most 60 characters: a grammar a small CPU can afford,
    and JSON that fits in REPLY tokens."""
    props = {name: {**prop, "maxLength": min(60, prop.get("maxLength", 60))}
             for name, prop in (schema.get("properties") or {}).items()}
    return {**schema, "properties": props}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [r for r in read_records(shared("cacm", "cacm.jsonl"))
            if 400 < len(r["contents"]) < 900][:ROWS]
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    write_records(path, rows)
    return path


def run(serving: LLMServing, corpus: Path, work: Path) -> list[dict[str, Any]]:
    steps = rare_steps("contents", num_neg=1)
    steps[2].init["grounding"] = False  # one reply a row: this test is about the batch path
    Pipeline(steps, serving=serving, retriever="gensim").run(
        corpus, work / "out.jsonl", cache_path=work / "cache")
    return read_records(work / "out.jsonl")


def test_a_batch_serving_runs_the_stages_with_cache_and_resume(llama, corpus, tmp_path):
    responses = tmp_path / "responses"
    first = LlamaBatchServing(llama)
    assert first.call_style() == "complete_batch"
    first.use_cache(responses)
    reference = run(first, corpus, tmp_path / "a")
    first.close()
    assert len(reference) == ROWS
    assert sum(r["question"] is not None for r in reference) >= 1
    assert all(size <= 2 for size in first.batches) and len(first.batches) >= 4
    asked = sum(first.batches)
    assert first.usage["calls"] == asked

    # the response cache: a new work directory, not one request reaches the engine
    again = LlamaBatchServing(llama)
    again.use_cache(responses)
    assert run(again, corpus, tmp_path / "b") == reference
    again.close()
    assert again.batches == [] and again.usage["cache_hits"] == asked

    # resume without the cache: Ctrl-C while the next-to-last batch runs, then again
    # Python's own SIGINT handler, whatever the launching shell did (a background job
    # starts with SIGINT ignored, or a library may have reset it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stopped = LlamaBatchServing(llama, interrupt_at=len(first.batches) - 1)
    stopped.use_cache(False)
    stopped.drain_seconds = 600  # the batch in flight ends before the engine is used again
    with pytest.raises(KeyboardInterrupt):
        run(stopped, corpus, tmp_path / "c")
    stopped.close()
    assert stopped.batches == first.batches[:-1]  # the batch in flight finished, no other
    assert list((tmp_path / "c" / "cache").glob("*.journal"))

    resumed = LlamaBatchServing(llama)
    resumed.use_cache(False)
    assert run(resumed, corpus, tmp_path / "c") == reference
    resumed.close()
    assert resumed.batches == first.batches[-1:]  # only what was never asked
    assert resumed.usage["journal_hits"] == asked - first.batches[-1]
