"""Operators, resolved through the plugin registry: ``from rare.operators import Doc2Query``."""

from __future__ import annotations

from rare.operator import Operator
from rare.plugins import namespace

__all__ = ["Operator", "names"]

names, __getattr__ = namespace("operators")
