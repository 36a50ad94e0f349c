"""rare-synth: turn a corpus of documents into RARE training data, through plugins."""

from __future__ import annotations

from rare.errors import (
    InputError,
    MissingDependencyError,
    PluginError,
    RareError,
    RetrieverError,
    RunnerError,
    ServingError,
    SettingsError,
    StorageError,
    UnknownNameError,
)
from rare.hookspecs import hookimpl
from rare.llm import ChatRequest, Completion, LLMServing
from rare.operator import Operator
from rare.retriever import MineResult, Retriever
from rare.step import StepContext
from rare.storage import FileStorage, Storage
from rare.text import EnglishAnalyzer, NearDuplicateRule

__version__ = "0.1.0"

__all__ = [
    "ChatRequest", "Completion", "EnglishAnalyzer", "FileStorage", "InputError", "LLMServing",
    "MineResult", "MissingDependencyError", "NearDuplicateRule", "Operator", "PluginError",
    "RareError", "Retriever", "RetrieverError", "RunnerError", "ServingError", "SettingsError",
    "StepContext", "Storage", "StorageError", "UnknownNameError", "hookimpl",
]
