"""Strict settings: every operator, retriever and serving rejects a key it does not know.

A component's settings are the keyword parameters of its constructor (and, for an operator,
of :meth:`rare.Operator.configure`, the per-run settings). :func:`settings_model` turns such a
signature into a pydantic model that forbids extra keys, so one source of truth (the
signature users read in ``help()``) gives typed, checked settings without a second
declaration to keep in step. :func:`check_settings` validates a dict of settings against it
and raises :class:`SettingsError` naming the key, the component and the keys it knows.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

import pydantic

from rare.errors import SettingsError

#: parameters the framework supplies itself, never settings
_SKIP = frozenset({"self", "cls", "storage"})


def _parameters(func: Callable[..., Any], owner: type | None) -> tuple[
        list[inspect.Parameter], bool, dict[str, Any]]:
    """The keyword parameters of ``func``, whether it takes ``**kwargs``, and its hints.

    A constructor that passes ``**kwargs`` on to its base class's is followed up the MRO, so
    a subclass that adds parameters still reports the base's.
    """
    params: list[inspect.Parameter] = []
    hints: dict[str, Any] = {}
    seen: set[str] = set()
    funcs: list[Callable[..., Any]] = [func]
    if owner is not None and func is getattr(owner, "__init__", None):
        funcs = [klass.__dict__["__init__"] for klass in owner.__mro__
                 if "__init__" in klass.__dict__ and klass is not object]
    open_ended = False
    for f in funcs:
        try:
            sig = inspect.signature(f)
        except (TypeError, ValueError):
            return params, True, hints
        try:
            hints.update(typing.get_type_hints(f))
        except Exception:  # noqa: BLE001 - an unresolvable hint only loses its type check
            pass
        open_ended = False
        for p in sig.parameters.values():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                open_ended = True
            elif p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in _SKIP \
                    and p.name not in seen:
                seen.add(p.name)
                params.append(p)
        if not open_ended:
            break
    return params, open_ended, hints


@cache
def _model(func: Callable[..., Any], owner: type | None,
           title: str) -> tuple[type[pydantic.BaseModel], bool]:
    params, open_ended, hints = _parameters(func, owner)
    fields: dict[str, Any] = {}
    for p in params:
        annotation = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    config = pydantic.ConfigDict(extra="allow" if open_ended else "forbid",
                                 arbitrary_types_allowed=True, protected_namespaces=())
    try:
        model: type[pydantic.BaseModel] = pydantic.create_model(
            title, __config__=config, **fields)
    except (pydantic.PydanticSchemaGenerationError, TypeError, NameError):
        # a hint pydantic cannot express: keep the names strict, drop the types
        loose: dict[str, Any] = {name: (Any, default) for name, (_, default) in fields.items()}
        model = pydantic.create_model(title, __config__=config, **loose)
    return model, open_ended


def settings_model(target: type | Callable[..., Any],
                   method: str = "__init__") -> type[pydantic.BaseModel]:
    """The pydantic model of ``target``'s settings (a class's ``method``, or a function)."""
    if isinstance(target, type):
        func = getattr(target, method)
        title = f"{target.__name__}.{method}"
        return _model(func, target if method == "__init__" else None, title)[0]
    return _model(target, None, getattr(target, "__qualname__", "settings"))[0]


def known_settings(target: type | Callable[..., Any], method: str = "__init__",
                   exclude: Iterable[str] = ()) -> list[str]:
    """The names ``target`` accepts as settings."""
    skip = set(exclude)
    return [n for n in settings_model(target, method).model_fields if n not in skip]


def check_settings(target: type | Callable[..., Any], settings: Mapping[str, Any], *,
                   component: str, method: str = "__init__", where: str = "",
                   supplied: Iterable[str] = ()) -> None:
    """Raise :class:`SettingsError` unless ``settings`` are valid for ``target``.

    ``component`` names the thing in the message ("operator BM25HardNeg"); ``where`` says
    where the settings came from ("[[steps]] 2, run"); ``supplied`` are parameters the
    framework fills in itself (they need not be given, and do not count as known).
    """
    model = settings_model(target, method)
    skip = set(supplied)
    known = [n for n in model.model_fields if n not in skip]
    origin = f" ({where})" if where else ""
    extra_ok = model.model_config.get("extra") == "allow"
    for key in settings:
        if key in model.model_fields or extra_ok:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SettingsError(
            f"unknown setting {key!r} for {component}{origin}; known settings: "
            f"{', '.join(known) or 'none'}.{hint}"
        )
    # Missing required values are the framework's business when it supplies them.
    values = dict(settings)
    for name in skip:
        if name in model.model_fields and name not in values:
            values[name] = None
    try:
        model.model_validate(values)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "?"
            if err["type"] == "missing":
                problems.append(f"setting {loc!r} is required")
                continue
            if loc.split(".")[0] in skip:
                continue
            problems.append(f"setting {loc!r}: {err['msg']} (got {err.get('input')!r})")
        if problems:
            raise SettingsError(f"{component}{origin}: " + "; ".join(problems)) from None
