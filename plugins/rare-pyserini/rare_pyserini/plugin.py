"""Entry point of the ``rare`` plugin group: registers the retriever ``pyserini``.

Importing this module starts no JVM; that happens when a retriever is created.
"""

from __future__ import annotations

from rare import hookimpl
from rare.hookspecs import Register


@hookimpl
def register_retrievers(register: Register) -> None:
    from rare_pyserini.retriever import PyseriniRetriever

    register(PyseriniRetriever, name="pyserini")
