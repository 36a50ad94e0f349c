"""Retriever backends, resolved through the plugin registry.

``rare.retrievers.create("tantivy", k1=1.2, b=0.75)`` builds one by name;
``rare.retrievers.TantivyRetriever`` (any registered name) gives the class itself.
"""

from __future__ import annotations

from typing import Any

from rare.errors import UnknownNameError
from rare.plugins import get, namespace
from rare.retriever import MineResult, Retriever
from rare.settings import check_settings

__all__ = ["Retriever", "MineResult", "create", "default_name", "engines", "names"]

#: the backends tried in order when none is named
PREFERRED = ("tantivy", "gensim")


def default_name() -> str:
    """The retriever used when none is named: the first installed of :data:`PREFERRED`."""
    known = engines()
    for name in PREFERRED:
        if name in known:
            return name
    raise UnknownNameError(
        f"no BM25 retriever is installed (known retrievers: {', '.join(known) or 'none'}); "
        "install one with: pip install rare-bm25-rs"
    )


def create(name: str | None = None, **options: Any) -> Retriever:
    """A new retriever of the backend registered as ``name`` (default: :func:`default_name`).

    Unknown options are a :class:`rare.SettingsError` naming the known ones.
    """
    name = name or default_name()
    cls: type[Retriever] = get("retrievers", name)
    check_settings(cls, options, component=f"retriever {name!r}")
    return cls(**options)


names, __getattr__ = namespace("retrievers")


def engines() -> list[str]:
    """The registered retrievers that are not references (``Retriever.reference``): what a
    list of every backend (``rare bench`` without ``--backends``, the parity suite) holds."""
    return [name for name in names() if not getattr(get("retrievers", name), "reference", False)]
