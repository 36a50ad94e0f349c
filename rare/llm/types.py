"""What goes to a model and what comes back: one request type, one result type.

This module imports nothing else of :mod:`rare.llm`, so every other part can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChatRequest:
    """One chat-completion request. ``json_schema`` asks for structured output."""

    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None

    def to_record(self) -> dict[str, Any]:
        """The request as a dict of its fields (what :func:`rare.llm.request_key` hashes)."""
        return {"messages": self.messages, "json_schema": self.json_schema,
                "max_tokens": self.max_tokens, "temperature": self.temperature,
                "seed": self.seed}

    @classmethod
    def from_prompt(cls, prompt: str, system: str | None = None, **kwargs: Any) -> ChatRequest:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return cls(messages=messages, **kwargs)


@dataclass
class Completion:
    """The outcome of one request: ``text`` when it worked, ``error`` (a reason) when not.

    ``error`` starts with a short, stable reason (``timeout``, ``http_500``, ``empty_reply``,
    ``cancelled``...) followed by a colon; run summaries count failures by it.
    """

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

    @property
    def reason(self) -> str:
        """The failure's kind ("http_500", "timeout", ...): ``error`` up to its first colon."""
        return (self.error or "unknown").split(":")[0]

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict of the reply, as the journal and the cache store it."""
        return {"text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "error": self.error, "attempts": self.attempts, "extra": dict(self.extra)}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Completion:
        """A stored reply (marked ``cached``); unknown keys are ignored."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "cached": True})


def error_reason(exc: BaseException) -> str:
    """A short, stable reason for a failure: the exception type and its first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__
