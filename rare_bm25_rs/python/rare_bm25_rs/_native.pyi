"""Type stubs of the Rust extension ``rare_bm25_rs._native``."""

import os
from typing import final

__all__ = [
    "Bm25Index",
    "analyze",
    "tokenize",
    "count_terms",
    "shingle_tokens",
    "cjk_share",
    "is_near_duplicate",
    "Bm25Error",
    "FORMAT_VERSION",
    "__version__",
]

__version__: str
FORMAT_VERSION: int

class Bm25Error(ValueError):
    """Bad arguments, an unusable index folder or an index failure."""

    kind: str

@final
class Bm25Index:
    def __new__(
        cls,
        path: str | os.PathLike[str] | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        scorer: str = "auto",
        writer_heap_bytes: int = 256_000_000,
        writer_threads: int | None = None,
        analyzer: str | None = None,
        language: str | None = None,
    ) -> Bm25Index: ...
    @property
    def analyzer(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def scorer(self) -> str: ...
    def add(self, ids: list[str], texts: list[str]) -> None: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...
    def search_batch(
        self, queries: list[str], k: int, threads: int | None = None
    ) -> list[list[tuple[str, float]]]: ...
    def get_texts(self, ids: list[str], threads: int | None = None) -> list[str | None]: ...
    def mine(
        self,
        queries: list[str],
        positive_ids: list[str],
        num_neg: int,
        start_rank: int = 0,
        threads: int | None = None,
        depth: int | None = None,
        positive_texts: list[str | None] | None = None,
        near_duplicate: tuple[int, int, float] | None = None,
        end_rank: int | None = None,
        sampling: str = "top",
        seed: int = 0,
        max_score_ratio: float | None = None,
        min_score_gap: float | None = None,
    ) -> tuple[
        list[list[str]],
        list[list[float]],
        list[list[int]],
        list[float | None],
        list[bool],
        tuple[int, int, int, int],
    ]: ...
    def score_texts(
        self, queries: list[str], texts: list[str], threads: int | None = None
    ) -> list[float]: ...
    def __len__(self) -> int: ...

def analyze(text: str, analyzer: str = "lucene") -> list[str]: ...
def tokenize(text: str) -> list[str]: ...
def count_terms(texts: list[str], analyzer: str = "lucene", threads: int | None = None) -> int: ...
def shingle_tokens(text: str) -> list[str]: ...
def cjk_share(texts: list[str]) -> float: ...
def is_near_duplicate(
    a: str, b: str, ngram: int = 8, min_shared: int = 25, min_fraction: float = 0.5
) -> bool: ...
