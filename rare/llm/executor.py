"""The batch executor: everything between a list of requests and a serving's calls.

:class:`BatchExecutor` answers a batch for one serving. It replays the step's journal,
looks replies up in the response cache, sends identical requests once, keeps
``max_workers`` calls in flight, journals each finished reply before its slot takes
another request, stops early when the endpoint is plainly down (fail-fast), drains the
calls in flight on Ctrl-C, shows a progress bar and counts usage and failures. The first
calls go out while the rest of the batch is still being hashed and looked up.

A serving is called in the one way it implements (see :class:`Backend`):

* ``complete(request)``: on ``max_workers`` threads;
* ``async acomplete(request)``: ``max_workers`` coroutines on an event loop that runs in
  a thread of its own (so a batch can be answered from any thread, a notebook's included);
* ``complete_batch(requests)``: every request that journal, cache and de-duplication left
  over, in one call, or in chunks of the serving's ``batch_size``.

The invariant that makes a SIGKILL cheap: a request counts as in flight from the moment it
is taken until its reply is in the journal, and at most ``max_workers`` (or one chunk)
are in flight. A killed run sends again only what was in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Literal, Protocol, TypeVar

from tqdm.auto import tqdm

from rare.errors import ServingError
from rare.llm.cache import ResponseCache, request_key
from rare.llm.journal import Journal
from rare.llm.types import ChatRequest, Completion, error_reason

log = logging.getLogger(__name__)

T = TypeVar("T")
CallStyle = Literal["complete", "acomplete", "complete_batch"]
#: settle(key, completion, source): record one outcome for the group of requests ``key``
Settle = Callable[[str, Completion, str], None]


class Backend(Protocol):
    """What the executor needs of a serving; :class:`rare.llm.LLMServing` provides it."""

    max_workers: int
    #: stop when this many calls in a row failed (after their retries): the endpoint is down
    fail_fast: int
    #: ... or when every call of a batch this big failed and no call has ever worked
    fail_fast_batch: int
    #: seconds a stopped batch waits for the calls in flight
    drain_seconds: float
    #: requests per ``complete_batch`` call (None: all that are left)
    batch_size: int | None
    #: what to check when every call fails (the end of the fail-fast message)
    failure_hint: str

    def call_style(self) -> CallStyle: ...
    def settings(self) -> dict[str, Any]: ...
    def describe(self) -> str: ...
    def open_cache(self) -> ResponseCache | None: ...
    def complete(self, request: ChatRequest) -> Completion: ...
    async def acomplete(self, request: ChatRequest) -> Completion: ...
    def complete_batch(self, requests: list[ChatRequest]) -> list[Completion]: ...
    async def aclose(self) -> None: ...


# -- cancellation ----------------------------------------------------------------------------
class CancelToken:
    """Set when a batch stops (Ctrl-C, fail-fast): calls in flight stop retrying."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False when cancelled first."""
        return not self._event.wait(max(0.0, seconds))

    async def asleep(self, seconds: float) -> bool:
        """Wait ``seconds`` without blocking the loop; False when cancelled first."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._event.is_set():
                return False
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, seconds))
            return False
        except asyncio.TimeoutError:
            return True
        finally:
            with self._lock:
                self._waiters.discard(waiter)


#: the token of the batch whose call runs in this thread or task (None outside a batch)
CURRENT_CANCEL: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "rare_llm_cancel", default=None)


# -- accounting ------------------------------------------------------------------------------
class Accounting:
    """Usage and failures of one serving, over all its batches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.usage: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.streak = 0  # calls failed in a row
        self.ever_ok = False  # whether any call (or reuse) has worked

    def count(self, result: Completion, source: str) -> None:
        """Account one outcome; ``source`` is "call", "journal", "cache" or "duplicate"."""
        with self.lock:
            if source == "call":
                self.usage["calls"] += 1
                self.usage["requests"] += max(1, result.attempts)
                self.usage["prompt_tokens"] += result.prompt_tokens
                self.usage["completion_tokens"] += result.completion_tokens
                if result.ok:
                    self.streak = 0
                    self.ever_ok = True
                else:
                    self.streak += 1
                    self.failures[result.reason] += 1
            else:
                self.usage["reused"] += 1
                self.usage[f"{source}_hits"] += 1
                if source != "duplicate":
                    self.streak = 0
                    self.ever_ok = True


# -- one batch in progress -------------------------------------------------------------------
_DONE = None  # what a worker puts on the queue when it stops


class _Batch:
    """The requests to call, handed out to workers; finished ones go to ``out``.

    The caller's thread keeps adding requests (:meth:`add`) while the first ones are
    already in flight, and says when there are no more (:meth:`fed`): hashing the request
    keys of a large batch takes tens of milliseconds that the first calls need not wait
    for. ``out`` carries lists of (position, completion): workers on threads post each one
    as it finishes; async workers post what finished in one turn of the event loop
    together, so the caller's thread wakes once per turn rather than once per reply.
    """

    def __init__(self, journal: Journal | None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.requests: list[ChatRequest] = []
        self.keys: list[str] = []
        self.journal = journal
        self.loop = loop
        self.cancel = CancelToken()
        self.out: queue.Queue[list[tuple[int, Completion]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # thread workers wait on it
        self._waiters: list[asyncio.Future[None]] = []  # ... async workers on these
        self._feeding = True
        self._next = 0
        self._buffer: list[tuple[int, Completion]] = []
        self.taken = 0
        self.delivered = 0

    def __len__(self) -> int:
        return len(self.requests)

    def add(self, items: list[tuple[str, ChatRequest]]) -> None:
        """More (key, request) to call."""
        with self._lock:
            for key, request in items:
                self.keys.append(key)
                self.requests.append(request)
        self._wake()

    def fed(self) -> None:
        """No more requests will be added."""
        with self._lock:
            self._feeding = False
        self._wake()

    def stop(self) -> None:
        """Cancel the batch: nothing more is taken, retries in flight stop waiting."""
        self.cancel.set()
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            self._more.notify_all()
            waiters, self._waiters = self._waiters, []
        if waiters:
            assert self.loop is not None
            try:
                self.loop.call_soon_threadsafe(_release, waiters)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def take(self, count: int = 1) -> list[int]:
        """Up to ``count`` positions to call, waiting for them while the batch is still
        being fed; none once the batch is cancelled or done (worker threads)."""
        with self._lock:
            while self._feeding and self._next >= len(self.requests) \
                    and not self.cancel.is_set():
                self._more.wait()
            return self._take(count)

    def take_or_wait(self) -> int | asyncio.Future[None] | None:
        """A position to call; a future to await before asking again while the batch is
        still being fed; None once it is cancelled or done (async workers, on the loop)."""
        with self._lock:
            if self._feeding and self._next >= len(self.requests) \
                    and not self.cancel.is_set():
                assert self.loop is not None
                waiter = self.loop.create_future()
                self._waiters.append(waiter)
                return waiter
            taken = self._take(1)
            return taken[0] if taken else None

    def _take(self, count: int) -> list[int]:
        if self.cancel.is_set():
            return []
        start = self._next
        self._next = min(len(self.requests), start + count)
        self.taken += self._next - start
        return list(range(start, self._next))

    def deliver(self, n: int, result: Completion) -> None:
        """A finished call: journal it first (a killed run resumes from it), then report."""
        if result.ok and self.journal is not None:
            self.journal.put(self.keys[n], result)
        with self._lock:
            self.delivered += 1
        if self.loop is None:
            self.out.put([(n, result)])
            return
        self._buffer.append((n, result))  # on the loop's thread: no lock needed
        if len(self._buffer) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._buffer:
            items, self._buffer = self._buffer, []
            self.out.put(items)

    def finish(self) -> None:
        """A worker stops (after posting what it delivered)."""
        self._flush()
        self.out.put(_DONE)

    def in_flight(self) -> int:
        with self._lock:
            return self.taken - self.delivered


def _release(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _failed(exc: BaseException) -> Completion:
    return Completion(text=None, error=error_reason(exc))


def _thread_worker(backend: Backend, batch: _Batch) -> None:
    CURRENT_CANCEL.set(batch.cancel)
    try:
        while taken := batch.take():
            (n,) = taken
            try:
                result = backend.complete(batch.requests[n])
            except Exception as exc:  # one bad call must not sink the batch
                result = _failed(exc)
            batch.deliver(n, result)
    finally:
        batch.finish()


def _batch_worker(backend: Backend, batch: _Batch, size: int) -> None:
    CURRENT_CANCEL.set(batch.cancel)
    try:
        while chunk := batch.take(size):
            requests = [batch.requests[n] for n in chunk]
            try:
                results = list(backend.complete_batch(requests))
                if len(results) != len(requests):
                    raise ServingError(f"{backend.describe()}: complete_batch returned "
                                       f"{len(results)} completions for {len(requests)} "
                                       "requests")
            except Exception as exc:  # the whole chunk failed
                results = [_failed(exc) for _ in requests]
            for n, result in zip(chunk, results):
                batch.deliver(n, result)
    finally:
        batch.finish()


async def _async_workers(backend: Backend, batch: _Batch, count: int) -> None:
    CURRENT_CANCEL.set(batch.cancel)  # the workers' tasks copy this context
    await asyncio.gather(*(_async_worker(backend, batch) for _ in range(count)))


async def _async_worker(backend: Backend, batch: _Batch) -> None:
    try:
        while True:
            n = batch.take_or_wait()
            if n is None:
                return
            if not isinstance(n, int):
                await n  # more requests are coming
                continue
            try:
                result = await backend.acomplete(batch.requests[n])
            except Exception as exc:  # one bad call must not sink the batch
                result = _failed(exc)
            batch.deliver(n, result)
    finally:
        batch.finish()


# -- the event loop of async servings --------------------------------------------------------
def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (``RARE_NO_UVLOOP=1`` declines it), else
    asyncio's: at 256 requests in flight, the loop's own work per reply is what limits the
    throughput, and uvloop's is a fraction of asyncio's."""
    if not os.environ.get("RARE_NO_UVLOOP"):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self._run, name="rare-llm-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, last: Coroutine[Any, Any, Any] | None = None, timeout: float = 10.0) -> None:
        """Run ``last`` (a serving's aclose), cancel what is left, stop and close the loop."""
        if self.loop.is_closed():
            return

        async def finish() -> None:
            if last is not None:
                try:
                    await last
                except Exception as exc:  # noqa: BLE001 - closing must not fail a run
                    log.warning("closing the serving failed: %s", exc)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(finish()).result(timeout)
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("closing the serving's event loop: %s", exc)
        _stop_loop(self.loop, self.thread)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10.0)
    if not thread.is_alive():
        loop.close()


# -- the executor ----------------------------------------------------------------------------
class BatchExecutor:
    """Answers batches of requests for one serving (see the module's docstring)."""

    def __init__(self, backend: Backend) -> None:
        # a weak reference: the serving owns its executor, not the other way round
        self._backend = weakref.ref(backend)
        self.accounting = Accounting()
        self._loop: _LoopThread | None = None
        self._loop_lock = threading.Lock()

    @property
    def backend(self) -> Backend:
        backend = self._backend()
        if backend is None:
            raise ServingError("the serving of this executor is gone")
        return backend

    @property
    def usage(self) -> Counter[str]:
        return self.accounting.usage

    @property
    def failures(self) -> Counter[str]:
        return self.accounting.failures

    # -- the event loop ------------------------------------------------------------------
    def _loop_thread(self) -> _LoopThread:
        with self._loop_lock:
            if self._loop is None or self._loop.loop.is_closed():
                self._loop = _LoopThread()
                weakref.finalize(self, _stop_loop, self._loop.loop, self._loop.thread)
            return self._loop

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the executor's event loop and wait for its result."""
        loop = self._loop_thread()
        if threading.current_thread() is loop.thread:
            coro.close()
            raise ServingError("a blocking call was made on the serving's own event loop; "
                               "await acomplete() there instead")
        return loop.submit(coro).result()

    def close(self) -> None:
        """Close the serving's async resources (``aclose``) and stop the event loop."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop(self.backend.aclose())

    # -- a batch -------------------------------------------------------------------------
    def _fail_fast_error(self, failed: int, last: Completion) -> ServingError:
        reasons = ", ".join(f"{k}: {v}" for k, v in self.failures.most_common(3))
        return ServingError(
            f"stopped: the last {failed} calls to {self.backend.describe()} all failed "
            f"({reasons}); last error: {last.error}. {self.backend.failure_hint}; finished "
            "replies are kept, so running again resumes."
        )

    def _stopped_error(self, futures: list[Future[None]], missing: int) -> ServingError:
        cause = next((f.exception() for f in futures
                      if f.done() and not f.cancelled() and f.exception() is not None), None)
        why = f" ({error_reason(cause)})" if cause is not None else ""
        return ServingError(f"{self.backend.describe()}: the calls stopped with {missing} "
                            f"request(s) unanswered{why}")

    def run(self, requests: Sequence[ChatRequest], desc: str | None = None,
            journal: Journal | None = None) -> list[Completion]:
        """Answer every request, in order; never raises because one call failed.

        Replies already in ``journal`` or in the response cache are reused without a call,
        and identical requests are sent once. Raises :class:`ServingError` when
        ``fail_fast`` calls in a row failed, or when every call of a batch (of
        ``fail_fast_batch`` or more) failed and no call has ever worked: the endpoint is
        down or misconfigured, and grinding through the rest would only fail the same way.
        """
        backend = self.backend
        style = backend.call_style()
        cache = backend.open_cache()
        settings = backend.settings()
        results: list[Completion | None] = [None] * len(requests)
        # identical requests (same key) are one group, answered by one call
        groups: dict[str, list[int]] = {}
        settled: dict[str, Completion] = {}  # the groups answered so far
        failed_groups = 0
        bar = tqdm(total=len(requests), desc=desc, disable=desc is None or not requests,
                   unit="req", leave=False)

        def settle(key: str, result: Completion, source: str) -> None:
            nonlocal failed_groups
            settled[key] = result
            self.accounting.count(result, source)
            members = groups[key]
            for j, i in enumerate(members):
                results[i] = result
                if j:
                    self.accounting.count(result, "duplicate")
            bar.update(len(members))
            failed_groups += not result.ok

        def feed() -> Iterator[list[tuple[str, ChatRequest]]]:
            """The groups that need a call, a slice of the requests at a time (hits in the
            journal or the cache, and duplicates of answered groups, settled on the way)."""
            step = max(64, backend.max_workers)
            for start in range(0, len(requests), step):
                new: list[tuple[str, ChatRequest]] = []
                for i in range(start, min(len(requests), start + step)):
                    request = requests[i]
                    key = request_key(settings, request)
                    members = groups.get(key)
                    if members is not None:  # a duplicate
                        members.append(i)
                        done = settled.get(key)
                        if done is not None:
                            results[i] = done
                            self.accounting.count(done, "duplicate")
                            bar.update(1)
                        continue
                    groups[key] = [i]
                    hit, source = None, ""
                    if journal is not None:
                        hit, source = journal.get(key), "journal"
                    if hit is None and cache is not None:
                        hit, source = cache.get(key), "cache"
                        if hit is not None and journal is not None:
                            journal.put(key, hit)
                    if hit is None:
                        new.append((key, request))
                    else:
                        settle(key, hit, source)
                yield new

        try:
            self._call(backend, style, feed(), journal, cache, settle)
            if len(groups) >= backend.fail_fast_batch and failed_groups == len(groups) \
                    and not self.accounting.ever_ok:
                last = results[next(reversed(groups.values()))[0]]
                assert last is not None
                raise self._fail_fast_error(failed_groups, last)
        finally:
            bar.close()
        return [r for r in results if r is not None]

    def _call(self, backend: Backend, style: CallStyle,
              feed: Iterator[list[tuple[str, ChatRequest]]], journal: Journal | None,
              cache: ResponseCache | None, settle: Settle) -> None:
        """Call the serving for every group that ``feed`` yields (starting with the first
        ones while the rest are still being hashed); settle each as it finishes."""
        batch = _Batch(journal)
        if style == "complete_batch":  # an engine takes whole chunks: all of them first
            for slice_ in feed:
                batch.add(slice_)
        threads: list[threading.Thread] = []
        futures: list[Future[None]] = []
        if style == "acomplete":
            loop = self._loop_thread()
            batch.loop = loop.loop

        workers = [0]  # (a cell: start_workers counts them)

        def start_workers() -> int:
            """Start workers up to ``max_workers`` (one for batches), no more than there
            are requests; the number of workers now."""
            if style == "complete_batch":
                want = 1 if len(batch) else 0
            else:
                want = min(backend.max_workers, len(batch))
            more, workers[0] = want - workers[0], max(want, workers[0])
            if more <= 0:
                return workers[0]
            if style == "acomplete":  # one hop to the loop for them all
                futures.append(loop.submit(_async_workers(backend, batch, more)))
            elif style == "complete_batch":
                size = backend.batch_size or len(batch)
                threads.append(threading.Thread(target=_batch_worker,
                                                args=(backend, batch, size),
                                                name="rare-llm-batch", daemon=True))
                threads[-1].start()
            else:
                for w in range(want - more, want):
                    threads.append(threading.Thread(target=_thread_worker,
                                                    args=(backend, batch),
                                                    name=f"rare-llm-{w}", daemon=True))
                    threads[-1].start()
            return workers[0]

        def alive() -> bool:
            return any(not f.done() for f in futures) or any(t.is_alive() for t in threads)

        def handle(n: int, result: Completion) -> None:
            key = batch.keys[n]
            if result.ok and cache is not None:
                cache.put(key, result)
            settle(key, result, "call")

        received, started, finished, feeding = 0, 0, 0, True
        items: list[tuple[int, Completion]] = []
        try:
            while feeding or received < len(batch):
                if feeding:  # add the next slice, then take what finished meanwhile
                    more = next(feed, None)
                    if more is None:
                        feeding = False
                        batch.fed()
                    elif more:
                        batch.add(more)
                    started = start_workers()
                    try:
                        got = batch.out.get_nowait()
                    except queue.Empty:
                        continue
                else:
                    try:
                        got = batch.out.get(timeout=1.0)
                    except queue.Empty:
                        if alive() or not batch.out.empty():
                            continue
                        finished, got = started, _DONE  # the workers are gone without a word
                if got is _DONE:
                    finished += 1
                    if finished >= started:
                        raise self._stopped_error(futures, len(batch) - received)
                    continue
                items = got
                while items:
                    n, result = items.pop(0)
                    received += 1
                    handle(n, result)
                    if self.accounting.streak >= backend.fail_fast:
                        raise self._fail_fast_error(self.accounting.streak, result)
        except BaseException:
            batch.stop()  # calls in flight stop retrying; nothing new is taken
            for n, result in items:  # finished, journaled, not yet counted
                handle(n, result)
            self._drain(batch, started - finished, backend.drain_seconds, handle)
            raise

    def _drain(self, batch: _Batch, live: int, seconds: float,
               handle: Callable[[int, Completion], None]) -> None:
        """After Ctrl-C or fail-fast: let the calls in flight finish, and keep their replies.

        A call in flight is paid for; waiting for it (``seconds`` at most) lets its reply
        reach the journal and the cache before the caller closes the client under it.
        """
        if live <= 0:
            return
        running = batch.in_flight()
        if running:
            log.warning("stopping: waiting up to %g s for %d call(s) in flight so that their "
                        "replies are kept (Ctrl-C again to drop them)", seconds, running)
        deadline = time.monotonic() + seconds
        try:
            while live > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    got = batch.out.get(timeout=left)
                except queue.Empty:
                    return
                if got is _DONE:
                    live -= 1
                    continue
                for n, result in got:
                    handle(n, result)
        except KeyboardInterrupt:
            pass
