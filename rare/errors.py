"""One error hierarchy for the whole framework: catch ``RareError`` to catch them all."""

from __future__ import annotations


class RareError(Exception):
    """Base class of every error rare-synth raises on purpose."""


class PluginError(RareError):
    """A plugin could not be loaded, or two plugins claim the same name."""


class UnknownNameError(RareError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SettingsError(RareError, TypeError):
    """A setting is unknown to the component it was given to, or has the wrong type."""


class StorageError(RareError):
    """A data file is missing, malformed, or cannot be written."""


class InputError(RareError):
    """Rows do not have the fields or types an operator needs."""


class RetrieverError(RareError, ValueError):
    """A retriever was used with bad arguments or a bad index."""


class ServingError(RareError):
    """An LLM serving could not be set up or reached."""


class MissingDependencyError(RareError, ImportError):
    """An optional backend is not installed; the message gives the pip line."""


class RunnerError(RareError):
    """A runner could not start or reach what it runs on (a cluster, its workers)."""
