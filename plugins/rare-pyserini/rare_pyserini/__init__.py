"""rare-pyserini: Lucene BM25 (Anserini, the engine inside Pyserini) as a rare-synth retriever."""

from __future__ import annotations

from rare_pyserini.retriever import PyseriniRetriever

__all__ = ["PyseriniRetriever"]
__version__ = "0.1.0"
