"""Backend names for ``rare bench``: every registered retriever, engines and references.

A reference (``Retriever.reference``, see :mod:`rare.bench.references`) is benchmarked only
when named; :func:`rare.retrievers.engines` is the default list.
"""

from __future__ import annotations

from collections.abc import Sequence

from rare.errors import MissingDependencyError, SettingsError, UnknownNameError
from rare.retriever import Retriever


def _class(name: str) -> type[Retriever] | None:
    from rare.plugins import get_registry

    entry = get_registry("retrievers").lookup.get(name)
    return entry.obj if entry is not None else None


def is_reference(name: str) -> bool:
    """Whether ``name`` is a registered retriever marked ``reference = True``."""
    return bool(getattr(_class(name), "reference", False))


def reference_names() -> list[str]:
    """The registered references (``tantivy-py``, ``bm25s`` unless disabled)."""
    import rare.retrievers

    return [name for name in rare.retrievers.names() if is_reference(name)]


def reference_note(name: str) -> str:
    """Why the reference ``name`` may rank differently from Lucene ("" when not said)."""
    return str(getattr(_class(name), "note", "") or "") if is_reference(name) else ""


def missing_packages(name: str) -> list[str]:
    """The pip packages the backend ``name`` says it needs and cannot find (nothing imported)."""
    check = getattr(_class(name), "missing_packages", None)
    return list(check()) if callable(check) else []


def check_backends(names: Sequence[str]) -> None:
    """Raise :class:`UnknownNameError` (listing what exists) for a name no retriever is
    registered under; a reference whose package is missing names its pip line."""
    import rare.retrievers

    engines = rare.retrievers.engines()
    references = reference_names()
    for name in names:
        if _class(name) is None:
            known = f"{', '.join(engines) or 'none'} (registered retrievers)"
            if references:
                known += f", {', '.join(references)} (references)"
            raise UnknownNameError(f"unknown backend {name!r}; known backends: {known}")
        missing = missing_packages(name)
        if missing:
            kind = "reference backend" if is_reference(name) else "backend"
            raise MissingDependencyError(f"the {kind} {name!r} needs {', '.join(missing)}: "
                                         f"pip install {' '.join(missing)}")


def make_backend(name: str, threads: int, k1: float, b: float,
                 language: str = "en") -> Retriever:
    """A new retriever ``name``; a reference also gets ``threads`` (its default for search)."""
    import rare.retrievers

    if is_reference(name):
        return rare.retrievers.create(name, k1=k1, b=b, threads=threads, language=language)
    return rare.retrievers.create(name, k1=k1, b=b, language=language)


def check_languages(names: Sequence[str], language: str) -> None:
    """Raise :class:`SettingsError` for a backend without an analyzer for ``language``."""
    if language == "auto":
        return
    for name in names:
        cls = _class(name)
        known = getattr(cls, "analyzers", {})
        if language not in known:
            raise SettingsError(f"the backend {name!r} has no analyzer for language "
                                f"{language!r}; its languages: {', '.join(known) or 'none'}")
