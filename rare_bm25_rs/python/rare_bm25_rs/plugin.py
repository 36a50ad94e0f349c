"""Entry point of rare-bm25-rs: registers the retriever "tantivy"."""

from __future__ import annotations

from rare import hookimpl
from rare_bm25_rs.retriever import TantivyRetriever


@hookimpl
def register_retrievers(register):  # type: ignore[no-untyped-def]
    register(TantivyRetriever, name="tantivy")
