"""LLM servings, resolved through the plugin registry:
``from rare.serving import APILLMServing_request``; ``rare.serving.create("embedded")``.
"""

from __future__ import annotations

from typing import Any

from rare.llm import LLMServing
from rare.plugins import get, namespace
from rare.settings import check_settings

__all__ = ["LLMServing", "create", "names"]

DEFAULT = "embedded"


def create(name: str | None = None, **options: Any) -> LLMServing:
    """A serving by registered name; the embedded local model when no name is given."""
    name = name or DEFAULT
    cls: type[LLMServing] = get("servings", name)
    check_settings(cls, options, component=f"serving {name!r}")
    return cls(**options)


names, __getattr__ = namespace("servings")
