"""The LLM layer, in three parts.

* :mod:`rare.llm.types`: :class:`ChatRequest` and :class:`Completion`, what goes in and out;
* :mod:`rare.llm.executor`: :class:`BatchExecutor`, which answers a batch: journal, response
  cache (:mod:`rare.llm.cache`), de-duplication, concurrency, fail-fast, Ctrl-C, accounting;
* :mod:`rare.llm.serving`: :class:`LLMServing`, the base class of a serving, which implements
  one of ``complete``, ``acomplete`` or ``complete_batch``.

Imports go one way only: types <- cache, journal <- executor <- serving.
"""

from __future__ import annotations

from rare.llm.cache import ResponseCache, cache_disabled_by_env, default_cache_dir, request_key
from rare.llm.executor import BatchExecutor, CancelToken
from rare.llm.journal import Journal
from rare.llm.serving import LLMServing
from rare.llm.types import ChatRequest, Completion, error_reason

__all__ = [
    "BatchExecutor", "CancelToken", "ChatRequest", "Completion", "Journal", "LLMServing",
    "ResponseCache", "cache_disabled_by_env", "default_cache_dir", "error_reason",
    "request_key",
]
