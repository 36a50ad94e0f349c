"""Entry point of rare-bm25-rs: registers the retriever "tantivy"."""

from __future__ import annotations

from rare import hookimpl
from rare.hookspecs import Register
from rare_bm25_rs.retriever import TantivyRetriever


@hookimpl
def register_retrievers(register: Register) -> None:
    register(TantivyRetriever, name="tantivy")
