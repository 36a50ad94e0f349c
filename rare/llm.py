"""The LLM-serving base class: one request type, one result type, concurrency and accounting.

A serving implements :meth:`LLMServing.complete` for one chat request; the base class runs
batches of them on ``max_workers`` threads, turns exceptions into failed
:class:`Completion` objects (a batch never dies because one call did) and counts tokens.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from tqdm.auto import tqdm


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
        """Release what the serving holds (threads, a loaded model)."""

    # -- batches ------------------------------------------------------------------------
    def _complete_safely(self, request: ChatRequest) -> Completion:
        try:
            result = self.complete(request)
        except Exception as exc:  # one bad call must not sink the batch
            result = Completion(text=None, error=error_reason(exc))
        with self._usage_lock:
            self.usage["calls"] += 1
            self.usage["prompt_tokens"] += result.prompt_tokens
            self.usage["completion_tokens"] += result.completion_tokens
            if not result.ok:
                self.failures[(result.error or "unknown").split(":")[0]] += 1
        return result

    def generate(self, requests: Sequence[ChatRequest], desc: str | None = None) -> list[Completion]:
        """Answer every request, ``max_workers`` at a time, in order; never raises per call."""
        results: list[Completion | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc=desc, disable=desc is None or not requests,
                   unit="req", leave=False)
        try:
            if self.max_workers == 1 or len(requests) <= 1:
                for i, request in enumerate(requests):
                    results[i] = self._complete_safely(request)
                    bar.update()
            else:
                with ThreadPoolExecutor(self.max_workers) as pool:
                    futures = {pool.submit(self._complete_safely, r): i
                               for i, r in enumerate(requests)}
                    for future, i in futures.items():
                        results[i] = future.result()
                        bar.update()
        finally:
            bar.close()
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
