"""Fixtures of the benchmark suites (``make bench``): each corpus loaded once per session,
and indexes to search and mine built once per (corpus, backend), untimed (``test_build``
times fresh builds)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_data import BACKENDS, CORPORA, build

from rare.bench import Dataset, load_dataset
from rare.retriever import Retriever


@pytest.fixture(scope="session")
def datasets() -> dict[str, Dataset]:
    missing = [spec.corpus for spec in CORPORA.values() if not Path(spec.corpus).exists()]
    if missing:
        pytest.fail(f"shared data missing: {', '.join(missing)}")
    return {name: load_dataset(spec) for name, spec in CORPORA.items()}


@pytest.fixture(scope="session")
def indexes(datasets: dict[str, Dataset]) -> Iterator[dict[tuple[str, str], Retriever]]:
    """Built indexes by (corpus, backend), built on first use."""
    built: dict[tuple[str, str], Retriever] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: tuple[str, str]) -> Retriever:
            corpus, backend = key
            built[key] = self[key] = build(backend, datasets[corpus])
            return built[key]

    yield Lazy()
    for retriever in built.values():
        close = getattr(retriever, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


@pytest.fixture(scope="session")
def reference_top10(datasets: dict[str, Dataset],
                    indexes: dict[tuple[str, str], Retriever]) -> dict[str, list[list[str]]]:
    """Each corpus's top-10 lists from the engine every backend is checked against:
    Lucene through Pyserini where it is installed, else tantivy."""
    engine = "pyserini" if "pyserini" in BACKENDS else "tantivy"
    return {corpus: [[d for d, _ in hits[:10]]
                     for hits in indexes[corpus, engine].search_batch(data.queries, 10, 1)]
            for corpus, data in datasets.items()}
