"""LLM servings, resolved through the plugin registry:
``from rare.serving import APILLMServing_request``; ``rare.serving.create("embedded")``.
"""

from __future__ import annotations

from typing import Any

from rare.llm import LLMServing
from rare.plugins import get, get_registry

__all__ = ["LLMServing", "create", "names"]

DEFAULT = "embedded"


def create(name: str | None = None, **options: Any) -> LLMServing:
    """A serving by registered name; the embedded local model when no name is given."""
    cls = get("servings", name or DEFAULT)
    return cls(**options)


def names() -> list[str]:
    return get_registry("servings").names()


def __getattr__(attr: str) -> Any:
    if attr.startswith("__"):
        raise AttributeError(attr)
    return get("servings", attr)
