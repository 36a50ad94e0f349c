"""The Rust extension agrees with its type stub (``_native.pyi``), checked by mypy's stubtest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy.stubtest", reason="mypy is not installed")
native = pytest.importorskip("rare_bm25_rs._native", reason="rare-bm25-rs is not installed")


def test_stub_matches_the_compiled_module(tmp_path: Path) -> None:
    # Run outside the repository: stubtest then reads the stub beside the imported module.
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "rare_bm25_rs._native"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
    stub = Path(native.__file__).parent / "_native.pyi"
    assert stub.is_file()
