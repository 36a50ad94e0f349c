"""Operators, resolved through the plugin registry: ``from rare.operators import Doc2Query``."""

from __future__ import annotations

from typing import Any

from rare.operator import Operator
from rare.plugins import get, get_registry

__all__ = ["Operator", "names"]


def names() -> list[str]:
    return get_registry("operators").names()


def __getattr__(attr: str) -> Any:
    if attr.startswith("__"):
        raise AttributeError(attr)
    return get("operators", attr)
