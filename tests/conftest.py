from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# Every test session gets its own response cache (subprocesses inherit it), so no test
# reads a reply cached by another session or writes into the user's cache.
os.environ["RARE_CACHE_DIR"] = tempfile.mkdtemp(prefix="rare-test-cache-")


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (tests read ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def anatomy_chunks() -> list[str]:
    """The reference pipeline's example input: 10 overlapping anatomy-textbook chunks."""
    rows = json.loads(shared("dataflow-examples", "pipeline_small_chunk.json").read_text())
    return [r["text"] for r in rows]


@pytest.fixture(scope="session")
def cacm_docs() -> list[dict[str, str]]:
    with shared("cacm", "cacm.jsonl").open() as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """A llama.cpp server with the embedded model on 127.0.0.1, one per test module: its
    base URL (``http://127.0.0.1:PORT/v1``; the model is ``smollm2``)."""
    pytest.importorskip("llama_cpp.server")
    from llama_server import llama_cpp_server

    with llama_cpp_server(tmp_path_factory.mktemp("llama-server")) as base:
        yield base
