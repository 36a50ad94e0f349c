"""The batch executor on its own: de-duplication, journal replay, cache hits, fail-fast,
cancellation, and the three ways a serving answers (threads, asyncio, whole batches)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest

from rare import ChatRequest, Completion, LLMServing, ServingError
from rare.llm import Journal, ResponseCache, request_key


def prompt(request: ChatRequest) -> str:
    return request.messages[-1]["content"]


class Counting:
    """What every test serving shares: calls counted, in flight tracked."""

    def setup(self, delay: float = 0.0, fail: str | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    def answer(self, request: ChatRequest) -> Completion:
        text = prompt(request)
        if self.fail is not None and self.fail in text:
            raise ConnectionError(f"refused: {text}")
        return Completion(text=f"reply to {text}", prompt_tokens=3, completion_tokens=5)

    def enter(self, request: ChatRequest) -> None:
        with self.lock:
            self.calls.append(prompt(request))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


class SyncServing(Counting, LLMServing):
    def __init__(self, max_workers: int = 4, delay: float = 0.0, fail: str | None = None
                 ) -> None:
        LLMServing.__init__(self, model_name="sync", max_workers=max_workers)
        self.setup(delay, fail)

    def complete(self, request: ChatRequest) -> Completion:
        self.enter(request)
        try:
            time.sleep(self.delay)
            return self.answer(request)
        finally:
            self.leave()


class AsyncServing(Counting, LLMServing):
    def __init__(self, max_workers: int = 4, delay: float = 0.0, fail: str | None = None
                 ) -> None:
        LLMServing.__init__(self, model_name="async", max_workers=max_workers)
        self.setup(delay, fail)

    async def acomplete(self, request: ChatRequest) -> Completion:
        self.enter(request)
        try:
            await asyncio.sleep(self.delay)
            return self.answer(request)
        finally:
            self.leave()


class BatchServing(Counting, LLMServing):
    def __init__(self, max_workers: int = 1, delay: float = 0.0, fail: str | None = None,
                 batch_size: int | None = None) -> None:
        LLMServing.__init__(self, model_name="batch", max_workers=max_workers)
        self.setup(delay, fail)
        self.batch_size = batch_size
        self.batches: list[int] = []

    def complete_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        self.batches.append(len(requests))
        for request in requests:
            self.enter(request)
        time.sleep(self.delay)
        out = []
        for request in requests:
            try:
                out.append(self.answer(request))
            except ConnectionError as exc:
                out.append(Completion(text=None, error=f"connection: {exc}"))
            self.leave()
        return out


STYLES = {"complete": SyncServing, "acomplete": AsyncServing, "complete_batch": BatchServing}


def requests_for(*texts: str) -> list[ChatRequest]:
    return [ChatRequest.from_prompt(t) for t in texts]


@pytest.fixture(params=list(STYLES), ids=list(STYLES))
def make(request: Any):
    made: list[LLMServing] = []

    def build(**options: Any) -> Any:
        serving = STYLES[request.param](**options)
        serving.use_cache(False)
        made.append(serving)
        return serving

    build.style = request.param  # type: ignore[attr-defined]
    yield build
    for serving in made:
        serving.close()


def test_each_style_answers_in_order_and_counts(make):
    serving = make()
    assert serving.call_style() == make.style
    texts = [f"q{i}" for i in range(25)]
    replies = serving.generate(requests_for(*texts), desc="t")
    assert [r.text for r in replies] == [f"reply to {t}" for t in texts]
    assert sorted(serving.calls) == sorted(texts)
    assert serving.usage["calls"] == 25 and serving.usage["prompt_tokens"] == 75
    assert serving.complete(requests_for("one")[0]).text == "reply to one"


def test_identical_requests_are_sent_once(make):
    serving = make()
    batch = requests_for(*[f"q{i % 4}" for i in range(20)])
    replies = serving.generate(batch)
    assert sorted(serving.calls) == ["q0", "q1", "q2", "q3"]
    assert [r.text for r in replies] == [f"reply to q{i % 4}" for i in range(20)]
    assert serving.usage["calls"] == 4 and serving.usage["duplicate_hits"] == 16


def test_a_large_batch_is_fed_to_the_workers_in_slices(make, tmp_path):
    """The first calls start while later requests are still being hashed: duplicates that
    are far apart (in flight or answered by then) and journal hits anywhere still make
    one call per new request, and every reply lands at its position."""
    serving = make(max_workers=3, delay=0.001)
    texts = [f"q{i % 150}" for i in range(400)]  # q0..q149, then the same twice more
    with Journal(tmp_path / "j.journal") as journal:
        serving.generate(requests_for(*[f"q{i}" for i in range(140, 150)]), journal=journal)
        replies = serving.generate(requests_for(*texts), journal=journal)
    assert [r.text for r in replies] == [f"reply to {t}" for t in texts]
    assert sorted(serving.calls) == sorted(f"q{i}" for i in range(150))  # each once
    assert serving.usage["journal_hits"] == 10
    assert serving.usage["duplicate_hits"] == 250
    assert serving.usage["calls"] == 150


def test_the_journal_is_replayed_and_written(make, tmp_path):
    serving = make()
    texts = [f"q{i}" for i in range(10)]
    with Journal(tmp_path / "j.journal") as journal:
        serving.generate(requests_for(*texts[:6]), journal=journal)
    assert len(serving.calls) == 6
    with Journal(tmp_path / "j.journal") as journal:
        assert len(journal) == 6
        replies = serving.generate(requests_for(*texts), journal=journal)
    assert len(serving.calls) == 10  # only the 4 new ones were called
    assert [r.cached for r in replies] == [True] * 6 + [False] * 4
    assert serving.usage["journal_hits"] == 6


def test_cache_hits_make_no_call_and_reach_the_journal(make, tmp_path):
    serving = make()
    cache = ResponseCache(tmp_path / "responses")
    request = requests_for("cached one")[0]
    cache.put(request_key(serving.settings(), request), Completion(text="from the cache"))
    serving.use_cache(cache)
    with Journal(tmp_path / "j.journal") as journal:
        (reply, other) = serving.generate([request, *requests_for("new")], journal=journal)
    assert reply.text == "from the cache" and reply.cached
    assert serving.calls == ["new"] and serving.usage["cache_hits"] == 1
    assert len(cache) == 2  # the new reply was cached
    with Journal(tmp_path / "j.journal") as journal:
        assert len(journal) == 2
    cache.close()


def test_failed_calls_are_neither_journaled_nor_cached(make, tmp_path):
    serving = make(fail="bad")
    serving.use_cache(tmp_path / "responses")
    with Journal(tmp_path / "j.journal") as journal:
        replies = serving.generate(requests_for("good", "bad", "good 2"), journal=journal)
    assert [r.ok for r in replies] == [True, False, True]
    assert replies[1].error is not None and "refused: bad" in replies[1].error
    assert serving.failures == {replies[1].error.split(":")[0]: 1}
    with Journal(tmp_path / "j.journal") as journal:
        assert len(journal) == 2


@pytest.mark.parametrize("cls", [SyncServing, AsyncServing], ids=["complete", "acomplete"])
def test_max_workers_bounds_the_calls_in_flight(cls):
    serving = cls(max_workers=5, delay=0.05)
    serving.use_cache(False)
    serving.generate(requests_for(*[f"q{i}" for i in range(30)]))
    assert serving.peak == 5
    serving.close()


def test_batch_size_chunks_the_pending_requests(tmp_path):
    serving = BatchServing(batch_size=4)
    serving.use_cache(False)
    with Journal(tmp_path / "j.journal") as journal:
        serving.generate(requests_for("a", "b"), journal=journal)
        serving.generate(requests_for(*"abcdefghijk"), journal=journal)
    # journal hits and duplicates never reach the engine: 9 new requests in chunks of 4
    assert serving.batches == [2, 4, 4, 1]
    serving.close()


def test_a_batch_of_the_wrong_length_fails_its_requests():
    class Short(LLMServing):
        def complete_batch(self, requests: list[ChatRequest]) -> list[Completion]:
            return [Completion(text="only one")]

    serving = Short(model_name="short")
    serving.use_cache(False)
    replies = serving.generate(requests_for("a", "b"))
    assert all(not r.ok for r in replies)
    assert "returned 1 completions for 2 requests" in (replies[0].error or "")


def test_a_serving_must_implement_one_way_of_answering():
    class Nothing(LLMServing):
        pass

    with pytest.raises(TypeError, match="implements none of complete, acomplete"):
        Nothing()


# -- fail-fast -------------------------------------------------------------------------------
def test_a_streak_of_failures_stops_the_batch(make):
    serving = make(max_workers=2, fail="q", delay=0.01)
    serving.fail_fast = 5
    serving.batch_size = 10  # (batch servings only) a stop comes between chunks
    with pytest.raises(ServingError, match=r"stopped: the last 5 calls to .* all failed"):
        serving.generate(requests_for(*[f"q{i}" for i in range(50)]))
    assert len(serving.calls) < 50


def test_a_small_batch_that_all_failed_stops_when_nothing_ever_worked(make):
    serving = make(fail="x")
    with pytest.raises(ServingError, match="the last 3 calls") as info:
        serving.generate(requests_for("x1", "x2", "x3"))
    assert "finished replies are kept, so running again resumes" in str(info.value)
    # once a call has worked, a failed small batch is just failed rows
    ok = make(fail="x")
    ok.generate(requests_for("fine"))
    assert not any(r.ok for r in ok.generate(requests_for("x1", "x2", "x3")))


# -- cancellation ----------------------------------------------------------------------------
def interrupt_after(seconds: float) -> threading.Timer:
    """Ctrl-C in ``seconds``: a real SIGINT, which wakes the main thread from its wait."""
    main = threading.main_thread().ident
    assert main is not None
    # Python's own handler, whatever the launching shell did (a background job ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_drains_the_calls_in_flight_into_the_journal(make, tmp_path):
    serving = make(max_workers=3, delay=0.3)
    if make.style == "complete_batch":
        serving.batch_size = 3
    texts = [f"q{i}" for i in range(30)]
    with Journal(tmp_path / "j.journal") as journal:
        interrupt_after(0.45)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            serving.generate(requests_for(*texts), journal=journal)
        stopped = time.monotonic() - start
    # the second wave was in flight at Ctrl-C: it finished and is kept; no third wave
    assert len(serving.calls) == 6, serving.calls
    assert 0.55 < stopped < 1.0
    with Journal(tmp_path / "j.journal") as journal:
        assert sorted(journal.entries) == sorted(
            request_key(serving.settings(), r) for r in requests_for(*serving.calls))
    assert serving.in_flight == 0


class RetryingAsync(LLMServing):
    """Fails every call after the first and waits long before retrying it."""

    def __init__(self) -> None:
        super().__init__(model_name="retrying", max_workers=2)
        self.waits: list[bool] = []

    async def acomplete(self, request: ChatRequest) -> Completion:
        if prompt(request) == "ok":
            return Completion(text="fine")
        self.waits.append(await self.asleep_unless_cancelled(30.0))
        return Completion(text=None, error="cancelled: stopped while retrying")


class RetryingSync(LLMServing):
    def __init__(self) -> None:
        super().__init__(model_name="retrying", max_workers=2)
        self.waits: list[bool] = []

    def complete(self, request: ChatRequest) -> Completion:
        if prompt(request) == "ok":
            return Completion(text="fine")
        self.waits.append(self.sleep_unless_cancelled(30.0))
        return Completion(text=None, error="cancelled: stopped while retrying")


@pytest.mark.parametrize("cls", [RetryingAsync, RetryingSync], ids=["async", "sync"])
def test_a_stop_cuts_the_waits_before_retries_short(cls):
    serving = cls()
    serving.use_cache(False)
    interrupt_after(0.3)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        serving.generate(requests_for("ok", "slow 1", "slow 2", "slow 3"))
    assert time.monotonic() - start < 5
    assert serving.waits == [False, False]  # both waits in flight were cut, no third began
    serving.close()
    # outside a batch nothing cancels a wait
    assert asyncio.run(LLMServing.asleep_unless_cancelled(serving, 0.01)) is True


def test_a_blocking_call_on_the_loop_itself_is_refused():
    serving = AsyncServing()

    async def inside() -> str:
        try:
            serving.complete(requests_for("x")[0])
        except ServingError as exc:
            return str(exc)
        return "no error"

    assert "on the serving's own event loop" in serving.executor.run_coroutine(inside())
    serving.close()


def test_close_stops_the_loop_and_a_later_batch_starts_a_new_one():
    serving = AsyncServing()
    serving.use_cache(False)
    serving.generate(requests_for("a"))
    loop = serving.executor._loop
    assert loop is not None and loop.thread.is_alive()
    serving.close()
    assert not loop.thread.is_alive() and loop.loop.is_closed()
    assert serving.generate(requests_for("b"))[0].text == "reply to b"
    serving.close()
