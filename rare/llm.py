"""The LLM-serving base class: one request type, one result type, concurrency and accounting.

A serving implements :meth:`LLMServing.complete` for one chat request; the base class runs
batches of them on ``max_workers`` threads, turns exceptions into failed
:class:`Completion` objects (a batch never dies because one call did) and counts tokens.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from rare.errors import ServingError

log = logging.getLogger(__name__)


@dataclass
class ChatRequest:
    """One chat-completion request. ``json_schema`` asks for structured output."""

    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None

    @classmethod
    def from_prompt(cls, prompt: str, system: str | None = None, **kwargs: Any) -> ChatRequest:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return cls(messages=messages, **kwargs)


@dataclass
class Completion:
    """The outcome of one request: ``text`` when it worked, ``error`` (a reason) when not."""

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def error_reason(exc: BaseException) -> str:
    """A short, stable reason for a failure: the exception type and its first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


class LLMServing(ABC):
    """Base class of every serving. Subclasses implement :meth:`complete`."""

    #: tokens the model can see, prompt and reply together
    context_window: int = 8192

    def __init__(self, model_name: str = "", max_workers: int = 1,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.model_name = model_name
        self.max_workers = max_workers
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self._usage_lock = threading.Lock()
        self.usage: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._state_lock = threading.Lock()
        self._local = threading.local()
        self._streak = 0  # calls failed in a row
        self._ever_ok = False  # whether any call (or reuse) has worked
        self._owns_cache = False

    # -- what a serving implements --------------------------------------------------------
    @abstractmethod
    def complete(self, request: ChatRequest) -> Completion:
        """Answer one request. May raise; :meth:`generate` records the exception."""

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``; a chars/4 estimate unless the serving knows its tokenizer."""
        return (len(text) + 3) // 4

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """``text`` cut to at most ``max_tokens`` tokens, and whether it was cut."""
        if self.count_tokens(text) <= max_tokens:
            return text, False
        return text[: max(0, max_tokens * 4)], True

    def settings(self) -> dict[str, Any]:
        """Everything besides the request that changes the reply (for cache keys)."""
        return {"class": type(self).__name__, "model": self.model_name,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "seed": self.seed}

    def close(self) -> None:
        """Release what the serving holds (threads, a loaded model, the response cache).

        Subclasses that override it call ``super().close()``.
        """
        self.close_cache()

    # -- caching ------------------------------------------------------------------------
    #: the response cache: "default" opens the shared one on first use, None turns it off
    response_cache: Any = "default"
    #: stop when this many calls in a row failed (after their retries): the endpoint is down
    fail_fast: int = 10
    #: ... or when every call of a batch this big failed and no call has ever worked
    fail_fast_batch: int = 3
    #: seconds a stopped batch waits for the calls in flight (see _drain)
    drain_seconds: float = 30.0

    def use_cache(self, cache: Any) -> None:
        """Set the response cache: a ResponseCache, a directory, True (default), False/None."""
        from rare.cache import ResponseCache

        if cache is True:
            cache = "default"
        elif isinstance(cache, (str, os.PathLike)) and cache != "default":
            cache = ResponseCache(cache)
        elif cache is False:
            cache = None
        # not ``cache or None``: an empty ResponseCache has len() 0 and is falsy
        self.response_cache = cache

    def _cache(self) -> Any:
        from rare.cache import ResponseCache, cache_disabled_by_env

        with self._state_lock:
            if isinstance(self.response_cache, str) and self.response_cache == "default":
                self.response_cache = None if cache_disabled_by_env() else ResponseCache()
                self._owns_cache = self.response_cache is not None
            return self.response_cache

    def close_cache(self) -> None:
        """Close the response cache this serving opened itself (a later call reopens it)."""
        with self._state_lock:
            if getattr(self, "_owns_cache", False) and self.response_cache is not None:
                self.response_cache.close()
                self.response_cache = "default"
                self._owns_cache = False

    # -- retries inside complete() ---------------------------------------------------------
    def sleep_unless_cancelled(self, seconds: float) -> bool:
        """Wait before a retry; False when the batch was cancelled (Ctrl-C, fail-fast)."""
        cancel = getattr(self._local, "cancel", None)
        if cancel is None:
            time.sleep(max(0.0, seconds))
            return True
        return not cancel.wait(max(0.0, seconds))

    def describe(self) -> str:
        """What error messages call this serving: the model, and where it runs."""
        return self.model_name or type(self).__name__

    # -- batches ------------------------------------------------------------------------
    def _count(self, result: Completion, source: str) -> None:
        """Account one outcome; ``source`` is "call", "journal", "cache" or "duplicate"."""
        with self._usage_lock:
            if source == "call":
                self.usage["calls"] += 1
                self.usage["requests"] += max(1, result.attempts)
                self.usage["prompt_tokens"] += result.prompt_tokens
                self.usage["completion_tokens"] += result.completion_tokens
                if result.ok:
                    self._streak = 0
                    self._ever_ok = True
                else:
                    self._streak += 1
                    self.failures[(result.error or "unknown").split(":")[0]] += 1
            else:
                self.usage["reused"] += 1
                self.usage[f"{source}_hits"] += 1
                if source != "duplicate":
                    self._streak = 0
                    self._ever_ok = True

    def _complete_safely(self, request: ChatRequest, key: str | None, cache: Any,
                         journal: Any, cancel: threading.Event | None) -> Completion:
        if key is not None:
            hit = journal.get(key) if journal is not None else None
            source = "journal"
            if hit is None and cache is not None:
                hit, source = cache.get(key), "cache"
                if hit is not None and journal is not None:
                    journal.put(key, hit)
            if hit is not None:
                self._count(hit, source)
                return hit
        if cancel is not None and cancel.is_set():
            return Completion(text=None, error="cancelled: the batch was stopped")
        self._local.cancel = cancel
        try:
            result = self.complete(request)
        except Exception as exc:  # one bad call must not sink the batch
            result = Completion(text=None, error=error_reason(exc))
        finally:
            self._local.cancel = None
        self._count(result, "call")
        if result.ok and key is not None:
            # the journal first: it is what a killed run resumes from
            if journal is not None:
                journal.put(key, result)
            if cache is not None:
                cache.put(key, result)
        return result

    def _fail_fast_error(self, failed: int, last: Completion) -> ServingError:
        reasons = ", ".join(f"{k}: {v}" for k, v in self.failures.most_common(3))
        return ServingError(
            f"stopped: the last {failed} calls to {self.describe()} all failed ({reasons}); "
            f"last error: {last.error}. Check the endpoint, the model name and the key; "
            "finished replies are kept, so running again resumes."
        )

    def _drain(self, futures: dict[Any, int]) -> None:
        """After Ctrl-C or fail-fast: drop queued calls, let the ones in flight finish.

        A call in flight is paid for; waiting for it (``drain_seconds`` at most) lets its
        reply reach the journal before the caller closes the client under it.
        """
        for future in futures:
            future.cancel()
        running = [f for f in futures if not f.done()]
        if not running:
            return
        log.warning("stopping: waiting up to %g s for %d call(s) in flight so that their "
                    "replies are kept (Ctrl-C again to drop them)", self.drain_seconds,
                    len(running))
        try:
            wait(running, timeout=self.drain_seconds)
        except KeyboardInterrupt:
            pass

    def generate(self, requests: Sequence[ChatRequest], desc: str | None = None,
                 journal: Any = None) -> list[Completion]:
        """Answer every request, ``max_workers`` at a time, in order; never raises per call.

        Replies already in ``journal`` (a :class:`rare.cache.Journal`) or in the response
        cache are reused without a call, and identical requests in one batch are sent once.
        Raises :class:`ServingError` when ``fail_fast`` calls in a row failed, or when every
        call of a batch (of ``fail_fast_batch`` or more) failed and no call of this serving
        has ever worked: the endpoint is down or misconfigured, and grinding through the rest
        would only fail the same way.
        """
        from rare.cache import request_key

        cache = self._cache()
        keys: list[str | None] = [None] * len(requests)
        if cache is not None or journal is not None:
            settings = self.settings()
            keys = [request_key(settings, r) for r in requests]
        # identical requests (same key) are answered by one call
        groups: dict[Any, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key if key is not None else ("row", i), []).append(i)
        work = [members for members in groups.values()]

        results: list[Completion | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc=desc, disable=desc is None or not requests,
                   unit="req", leave=False)
        cancel = threading.Event()
        failed_calls = 0
        pool = ThreadPoolExecutor(self.max_workers) if self.max_workers > 1 else None
        futures: dict[Any, int] = {}
        try:
            def run(members: list[int]) -> Completion:
                first = members[0]
                return self._complete_safely(requests[first], keys[first], cache, journal,
                                             cancel)

            if pool is None:
                done: Any = ((n, run(members)) for n, members in enumerate(work))
            else:
                futures = {pool.submit(run, members): n for n, members in enumerate(work)}
                done = ((futures[f], f.result()) for f in as_completed(futures))
            for n, result in done:
                members = work[n]
                for j, i in enumerate(members):
                    results[i] = result
                    if j:
                        self._count(result, "duplicate")
                bar.update(len(members))
                failed_calls += not result.ok
                if self._streak >= self.fail_fast:
                    raise self._fail_fast_error(self._streak, result)
            if len(work) >= self.fail_fast_batch and failed_calls == len(work) \
                    and not self._ever_ok:
                last = results[work[-1][0]]
                assert last is not None
                raise self._fail_fast_error(failed_calls, last)
        except BaseException:
            cancel.set()  # in-flight calls stop retrying; queued ones are dropped
            self._drain(futures)
            raise
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        return [r for r in results if r is not None]

    def generate_from_input(self, user_inputs: list[str], system_prompt: str = "",
                            json_schema: dict[str, Any] | None = None) -> list[str | None]:
        """The reference's call: one reply per prompt (None where the call failed)."""
        requests = [ChatRequest.from_prompt(p, system_prompt or None, json_schema=json_schema)
                    for p in user_inputs]
        return [c.text for c in self.generate(requests)]

    def __enter__(self) -> LLMServing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
