"""Pipeline runners, resolved through the plugin registry.

``rare.runners.create("ray", address="10.0.0.1:6379")`` builds one by name (its settings are
checked against its constructor first); ``local`` (:class:`rare.runner.LocalRunner`) is the
core's own and the default.
"""

from __future__ import annotations

from typing import Any

from rare.plugins import get, namespace
from rare.runner import Runner
from rare.settings import check_settings

__all__ = ["DEFAULT", "Runner", "check", "create", "names"]

#: the runner used when none is named
DEFAULT = "local"


def check(name: str | None, options: dict[str, Any], where: str = "runner options") -> type:
    """The runner class registered as ``name``, after checking ``options`` against it."""
    name = name or DEFAULT
    cls: type = get("runners", name)
    check_settings(cls, options, component=f"runner {name!r}", where=where)
    return cls


def create(name: str | None = None, **options: Any) -> Runner:
    """A new runner of the kind registered as ``name`` (default: ``local``)."""
    cls = check(name, options)
    runner: Runner = cls(**options)
    return runner


names, __getattr__ = namespace("runners")
