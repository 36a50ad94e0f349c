"""The hooks a rare-synth plugin can implement.

Every hook hands the plugin a ``register(obj, name=None, aliases=())`` callback, as in
simonw/llm: the plugin calls it once per thing it provides. A hookimpl may accept fewer
arguments than its spec, so specs can gain arguments without breaking plugins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("rare")
hookimpl = pluggy.HookimplMarker("rare")


class Register(Protocol):
    """The callback every ``register_*`` hook receives."""

    def __call__(self, obj: Any, name: str | None = None,
                 aliases: Iterable[str] = ()) -> None: ...


@hookspec
def register_operators(register: Register) -> None:
    """Register pipeline operators (subclasses of :class:`rare.Operator`).

    :param register: call ``register(cls, name=None, aliases=())`` for each operator.
    """


@hookspec
def register_retrievers(register: Register) -> None:
    """Register retriever backends (subclasses of :class:`rare.Retriever`).

    :param register: call ``register(cls, name=None, aliases=())``; the name is what users
        pass to ``rare.retrievers.create`` and ``--retriever``.
    """


@hookspec
def register_servings(register: Register) -> None:
    """Register LLM servings (subclasses of :class:`rare.LLMServing`).

    :param register: call ``register(cls, name=None, aliases=())`` for each serving.
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register exporters that turn a run's rows into what a trainer reads (subclasses of
    :class:`rare.export.Exporter`).

    :param register: call ``register(cls, name=None, aliases=())``; the name is what users
        pass to ``rare export --format``.
    """
