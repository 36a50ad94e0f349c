"""Retriever backends, resolved through the plugin registry.

``rare.retrievers.create("tantivy", k1=1.2, b=0.75)`` builds one by name;
``rare.retrievers.TantivyRetriever`` (any registered name) gives the class itself.
"""

from __future__ import annotations

from typing import Any

from rare.plugins import get, namespace
from rare.retriever import MineResult, Retriever

__all__ = ["Retriever", "MineResult", "create", "names"]


def create(name: str, **options: Any) -> Retriever:
    """A new retriever of the backend registered as ``name``."""
    cls: type[Retriever] = get("retrievers", name)
    return cls(**options)


names, __getattr__ = namespace("retrievers")
