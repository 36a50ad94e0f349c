"""rare-bm25-rs: the retriever "tantivy" for rare-synth (BM25 on tantivy, mining in Rust)."""

from __future__ import annotations

from rare_bm25_rs._native import (
    FORMAT_VERSION,
    Bm25Error,
    analyze,
    cjk_share,
    count_terms,
    is_near_duplicate,
    shingle_tokens,
    tokenize,
)
from rare_bm25_rs._native import __version__ as __version__
from rare_bm25_rs.retriever import TantivyError, TantivyRetriever

__all__ = [
    "FORMAT_VERSION", "Bm25Error", "TantivyError", "TantivyRetriever", "analyze", "cjk_share",
    "count_terms", "is_near_duplicate", "shingle_tokens", "tokenize",
]
