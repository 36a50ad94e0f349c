"""Every retriever backend: close() releases it, a closed one says so, ``with`` closes it, and
its constructor takes only the settings it knows."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import rare.plugins
import rare.retrievers
from rare import NearDuplicateRule, Retriever, RetrieverError
from rare.retriever import Hits

DOCS = (["a", "b", "c"], ["apples and pears and plums in the orchard by the river",
                          "pears ripen in autumn",
                          "a compiler turns source code into machine code"])

# Every first-party backend that is installed (as tests/test_backend_parity.py picks them).
BACKENDS = [name for name in ("gensim", "tantivy", "pyserini") if name in rare.retrievers.names()]


def _uses(retriever: Retriever) -> dict[str, Callable[[], Any]]:
    """Every method of the protocol, called with good arguments."""
    return {
        "index": lambda: retriever.index(["z"], ["zebra"]),
        "commit": retriever.commit,
        "search_batch": lambda: retriever.search_batch(["pears"], 2),
        "get_texts": lambda: retriever.get_texts(["a"]),
        "mine": lambda: retriever.mine(["pears in autumn"], ["b"], num_neg=1),
        "len": lambda: len(retriever),
    }


def _filled(name: str, **options: Any) -> Retriever:
    retriever = rare.retrievers.create(name, **options)
    retriever.index(*DOCS)
    retriever.commit()
    return retriever


@pytest.mark.parametrize("name", BACKENDS)
def test_use_after_close_is_a_clear_error(name: str) -> None:
    retriever = _filled(name)
    assert [d for d, _ in retriever.search_batch(["pears"], 2)[0]] == ["b", "a"]
    assert not retriever.closed
    retriever.close()
    assert retriever.closed
    for what, use in _uses(retriever).items():
        with pytest.raises(RetrieverError, match=rf"{name} retriever .*is closed") as exc:
            use()
        assert "create a new one" in str(exc.value), what
    retriever.close()  # twice is fine
    assert retriever.closed
    assert "closed" in repr(retriever)


@pytest.mark.parametrize("name", BACKENDS)
def test_with_block_closes(name: str) -> None:
    with _filled(name) as retriever:
        assert len(retriever) == 3
        assert retriever.get_texts(["c", "nope"]) == [DOCS[1][2], None]
    assert retriever.closed
    with pytest.raises(RetrieverError, match="closed"):
        retriever.search_batch(["pears"], 1)

    with pytest.raises(KeyError, match="raised inside"):  # an error inside still closes
        with _filled(name) as failing:
            raise KeyError("raised inside")
    assert failing.closed


@pytest.mark.parametrize("name", BACKENDS)
def test_close_drops_what_the_backend_holds(name: str, tmp_path: Path) -> None:
    if name == "gensim":
        retriever = _filled(name)
        retriever.close()
        held = vars(retriever)
        assert held["_weights"] is None and held["_dictionary"] is None
        assert not held["_texts"] and not held["_tokens"] and not held["_ids"]
    elif name == "tantivy":
        folder = tmp_path / "tantivy"
        with _filled(name, path=folder):
            pass
        # The folder's writer lock was released: another retriever opens it and writes.
        with rare.retrievers.create(name, path=folder) as again:
            again.index(["d"], ["pears again"])
            assert len(again) == 4
        assert vars(again)["_handle"] is None
    else:
        temporary = _filled(name)
        temp_dir = temporary.path
        assert temp_dir.is_dir()
        temporary.close()
        assert not temp_dir.exists()  # its own temporary index is removed
        kept = tmp_path / "lucene"
        with _filled(name, path=kept) as built:
            assert built._reader is not None
        assert built._reader is None and built._directory is None
        assert kept.is_dir()  # a directory the caller named is kept, and opens again
        with rare.retrievers.create(name, path=kept) as reopened:
            assert len(reopened) == 3


@pytest.mark.parametrize("name", BACKENDS)
def test_constructor_rejects_unknown_settings(name: str) -> None:
    with pytest.raises(TypeError, match="k_1"):
        rare.retrievers.create(name, k_1=0.9)
    cls = rare.plugins.get("retrievers", name)
    params = inspect.signature(cls).parameters
    assert not [p for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert {"k1", "b", "near_duplicate"} <= set(params)  # the base's settings, explicitly
    retriever = rare.retrievers.create(name, k1=0.9, b=0.4, near_duplicate=None)
    assert (retriever.k1, retriever.b, retriever.near_duplicate) == (0.9, 0.4, None)
    retriever.close()


class Memory(Retriever):
    """The smallest backend: substring match, nothing to release."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75,
                 near_duplicate: NearDuplicateRule | None = NearDuplicateRule()) -> None:
        super().__init__(k1=k1, b=b, near_duplicate=near_duplicate)
        self.docs: dict[str, str] = {}

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self._check_open()
        self.docs.update(zip(ids, texts))

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        self._check_open()
        return [[(d, 1.0) for d, t in self.docs.items() if q in t][:k] for q in queries]

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        self._check_open()
        return [self.docs.get(d) for d in ids]

    def __len__(self) -> int:
        self._check_open()
        return len(self.docs)


def test_base_class_close_and_context_manager() -> None:
    with Memory() as memory:
        memory.index(*DOCS)
        assert memory.mine(["pears"], ["a"], num_neg=1) == [["b"]]
    assert memory.closed
    with pytest.raises(RetrieverError, match="this Memory retriever is closed"):
        memory.mine(["pears"], ["a"], num_neg=1)
    memory.close()
    with pytest.raises(TypeError, match="unexpected keyword argument 'k_1'"):
        Memory(k_1=0.9)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'path'"):
        Retriever.__init__(Memory(), path="x")  # type: ignore[call-arg]
