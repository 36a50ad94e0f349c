"""Pieces the LLM stages share: reply parsing, seeded choices, retries of failed rows."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from rare import ChatRequest, Completion, LLMServing
from rare.llm import Journal

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def parse_json_object(reply: str) -> dict[str, Any]:
    """The first JSON object in ``reply``, looking inside code fences first.

    Raises ValueError saying why when there is none.
    """
    decoder = json.JSONDecoder()
    candidates = [m.group(1) for m in _FENCE.finditer(reply)] + [reply]
    for text in candidates:
        start = text.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                start = text.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                return obj
            start = text.find("{", start + 1)
    raise ValueError("no JSON object in the reply")


def reply_fields(completion: Completion) -> dict[str, Any]:
    """The reply's JSON object with its keys stripped and lower-cased; ValueError saying why
    there is none (a reply cut off by max_tokens says so)."""
    try:
        obj = parse_json_object(completion.text or "")
    except ValueError as exc:
        if completion.finish_reason == "length":
            raise ValueError(f"truncated (finish_reason=length): {exc}") from None
        raise
    return {str(k).strip().lower(): v for k, v in obj.items()}


def seeded_int(*parts: Any) -> int:
    """A stable 64-bit integer from ``parts`` (unlike hash(), the same in every process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


Parse = Callable[[Completion], Any]

#: failed completions that a stage asks again for (the serving retried the others)
RETRYABLE_ERRORS = ("empty_reply", "empty_choices")


def generate_with_retries(serving: LLMServing, build: Callable[[int, int], ChatRequest],
                          indices: Sequence[int], parse: Parse, max_attempts: int,
                          desc: str, journal: Journal | None = None) -> tuple[
                              dict[int, Any], dict[int, tuple[str, str | None]], dict[int, int]]:
    """Ask for every index, retrying only the ones whose reply failed to parse.

    ``build(index, attempt)`` makes the request; ``parse(completion)`` returns the value or
    raises ValueError with the reason. Returns (values, failures with their reason and last
    raw reply, attempts used), each keyed by index.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    values: dict[int, Any] = {}
    failures: dict[int, tuple[str, str | None]] = {}
    attempts: dict[int, int] = {}
    pending = list(indices)
    for attempt in range(max_attempts):
        if not pending:
            break
        label = desc if attempt == 0 else f"{desc} (retry {attempt})"
        completions = serving.generate([build(i, attempt) for i in pending], desc=label,
                                       journal=journal)
        still = []
        for i, completion in zip(pending, completions):
            attempts[i] = attempt + 1
            if not completion.ok:
                failures[i] = (completion.error or "call failed", completion.text)
                # The serving already retried what a retry can mend (timeouts, 429, 5xx);
                # only an empty reply is worth asking again with another seed.
                if (completion.error or "").startswith(RETRYABLE_ERRORS):
                    still.append(i)
                continue
            try:
                values[i] = parse(completion)
            except ValueError as exc:
                failures[i] = (f"unusable reply: {exc}", completion.text)
                still.append(i)
                continue
            failures.pop(i, None)
        pending = still
    return values, failures, attempts


class Tally:
    """An operator's running stats over the batches of one step: failures, tokens, extras."""

    def __init__(self, serving: LLMServing | None = None) -> None:
        self.serving = serving
        self.tokens0 = self._tokens()
        self.stats: dict[str, Any] = {"failed": 0, "tokens": 0}

    def _tokens(self) -> int:
        if self.serving is None:
            return 0
        return self.serving.usage["prompt_tokens"] + self.serving.usage["completion_tokens"]

    def add(self, **counts: int) -> dict[str, Any]:
        """Add ``counts`` to the stats, refresh the token count, return the stats."""
        for key, value in counts.items():
            self.stats[key] = self.stats.get(key, 0) + value
        self.stats["tokens"] = self._tokens() - self.tokens0
        return self.stats
