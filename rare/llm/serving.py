"""The base class of every serving: how to ask one model, and nothing else.

A serving implements exactly one way of answering, the one its engine is good at:

* ``complete(request) -> Completion``: a blocking call (the executor runs ``max_workers``
  of them on threads);
* ``async acomplete(request) -> Completion``: a coroutine, for HTTP clients (``max_workers``
  requests in flight on one event loop);
* ``complete_batch(requests) -> list[Completion]``: a whole batch at once, for in-process
  engines (vLLM, SGLang, llama.cpp); ``batch_size`` caps the requests per call.

Everything else (journal, response cache, de-duplication, concurrency, fail-fast, Ctrl-C,
progress, accounting) is the :class:`rare.llm.executor.BatchExecutor`'s.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rare.llm.cache import ResponseCache, cache_disabled_by_env
from rare.llm.executor import CURRENT_CANCEL, BatchExecutor, CallStyle
from rare.llm.journal import Journal
from rare.llm.types import ChatRequest, Completion

_STYLES: tuple[CallStyle, ...] = ("complete_batch", "acomplete", "complete")


class LLMServing:
    """Base class of every serving: implement one of ``complete``, ``acomplete``,
    ``complete_batch`` (see the module's docstring), and ``settings()`` when something
    besides model and sampling changes the reply."""

    #: tokens the model can see, prompt and reply together
    context_window: int = 8192
    #: the response cache: "default" opens the shared one on first use, None turns it off
    response_cache: ResponseCache | str | None = "default"
    #: stop when this many calls in a row failed (after their retries): the endpoint is down
    fail_fast: int = 10
    #: ... or when every call of a batch this big failed and no call has ever worked
    fail_fast_batch: int = 3
    #: seconds a stopped batch waits for the calls in flight
    drain_seconds: float = 30.0
    #: requests per ``complete_batch`` call (None: every request that is left)
    batch_size: int | None = None
    #: what to check when every call fails (the end of the fail-fast message)
    failure_hint: str = "Check the endpoint, the model name and the key"

    def __init__(self, model_name: str = "", max_workers: int = 1,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.call_style()  # a serving that implements no way of answering fails here
        self.model_name = model_name
        self.max_workers = max_workers
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self._state_lock = threading.Lock()
        self._owns_cache = False
        self.executor = BatchExecutor(self)

    # -- what a serving implements (one of the three) --------------------------------------
    def complete(self, request: ChatRequest) -> Completion:
        """Answer one request. May raise; the executor records the exception as a failure.

        A serving that implements ``acomplete`` or ``complete_batch`` gets this for free.
        """
        style = self.call_style()
        if style == "acomplete":
            return self.executor.run_coroutine(self.acomplete(request))
        if style == "complete_batch":
            (result,) = self.complete_batch([request])
            return result
        raise NotImplementedError  # pragma: no cover - call_style() said it is overridden

    async def acomplete(self, request: ChatRequest) -> Completion:
        """Answer one request on the executor's event loop (HTTP servings)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement acomplete")

    def complete_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answer a batch in one go, one completion per request, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement complete_batch")

    async def aclose(self) -> None:
        """Release what ``acomplete`` opened (an async client); runs on the executor's loop."""

    def call_style(self) -> CallStyle:
        """Which of the three methods this serving implements (batch, then async, first)."""
        cls = type(self)
        for name in _STYLES:
            if getattr(cls, name) is not getattr(LLMServing, name):
                return name
        raise TypeError(f"{cls.__name__} implements none of complete, acomplete and "
                        "complete_batch")

    # -- what a serving may refine ---------------------------------------------------------
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

    def describe(self) -> str:
        """What error messages call this serving: the model, and where it runs."""
        return self.model_name or type(self).__name__

    def close(self) -> None:
        """Release what the serving holds (an async client and its loop, a loaded model,
        the response cache). Subclasses that override it call ``super().close()``."""
        self.executor.close()
        self.close_cache()

    def __enter__(self) -> LLMServing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- retries inside a call -------------------------------------------------------------
    def sleep_unless_cancelled(self, seconds: float) -> bool:
        """Wait before a retry; False when the batch was stopped (Ctrl-C, fail-fast)."""
        cancel = CURRENT_CANCEL.get()
        if cancel is None:
            time.sleep(max(0.0, seconds))
            return True
        return cancel.sleep(seconds)

    async def asleep_unless_cancelled(self, seconds: float) -> bool:
        """:meth:`sleep_unless_cancelled` for ``acomplete``."""
        import asyncio

        cancel = CURRENT_CANCEL.get()
        if cancel is None:
            await asyncio.sleep(max(0.0, seconds))
            return True
        return await cancel.asleep(seconds)

    # -- accounting (kept by the executor) -------------------------------------------------
    @property
    def usage(self) -> Counter[str]:
        """Calls, HTTP requests, tokens and reused replies, over every batch so far."""
        return self.executor.usage

    @property
    def failures(self) -> Counter[str]:
        """Failed calls by reason ("http_500", "timeout", ...)."""
        return self.executor.failures

    # -- the response cache ----------------------------------------------------------------
    def use_cache(self, cache: ResponseCache | str | os.PathLike[str] | bool | None) -> None:
        """Set the response cache: a ResponseCache, a directory, True (default), False/None."""
        if cache is True:
            cache = "default"
        elif isinstance(cache, (str, os.PathLike)) and cache != "default":
            cache = ResponseCache(cache)
        elif cache is False:
            cache = None
        # not ``cache or None``: an empty ResponseCache has len() 0 and is falsy
        self.response_cache = cache

    def open_cache(self) -> ResponseCache | None:
        """The response cache to use now (opening the shared one on first use), or None."""
        with self._state_lock:
            if isinstance(self.response_cache, str) and self.response_cache == "default":
                self.response_cache = None if cache_disabled_by_env() else ResponseCache()
                self._owns_cache = self.response_cache is not None
            cache = self.response_cache
            return None if cache is None or isinstance(cache, str) else cache

    def close_cache(self) -> None:
        """Close the response cache this serving opened itself (a later call reopens it)."""
        with self._state_lock:
            if self._owns_cache and isinstance(self.response_cache, ResponseCache):
                self.response_cache.close()
                self.response_cache = "default"
                self._owns_cache = False

    # -- batches (the executor's work) -----------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], desc: str | None = None,
                 journal: Journal | None = None) -> list[Completion]:
        """Answer every request, in order; see :meth:`BatchExecutor.run`."""
        return self.executor.run(requests, desc=desc, journal=journal)

    def generate_from_input(self, user_inputs: list[str], system_prompt: str = "",
                            json_schema: dict[str, Any] | None = None) -> list[str | None]:
        """The reference's call: one reply per prompt (None where the call failed)."""
        requests = [ChatRequest.from_prompt(p, system_prompt or None, json_schema=json_schema)
                    for p in user_inputs]
        return [c.text for c in self.generate(requests)]
