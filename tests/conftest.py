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
