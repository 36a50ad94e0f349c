"""A real llama.cpp server (``python -m llama_cpp.server``) on 127.0.0.1 with the embedded
model, for the tests that talk to an OpenAI-compatible endpoint; conftest's ``llama_server``
fixture starts one per test module."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: the server's context window: small, so that a 2-core run takes minutes
N_CTX = 2048
#: the model's name on the server
ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_cpp_server(folder: Path, n_ctx: int = N_CTX) -> Iterator[str]:
    """Start the server, wait until it answers, yield its base URL (``.../v1``); stop it
    after. Its log goes to ``folder/server.log`` (a pipe nobody reads would fill up and
    block it) and is shown when it does not start."""
    from rare_embedded import find_model_file

    port = free_port()
    log_path = folder / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(find_model_file()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
         "--model_alias", ALIAS, "--interrupt_requests", "False"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
    try:
        while True:
            try:
                with opener.open(f"{base}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("llama.cpp server did not start: "
                                f"{log_path.read_text(errors='replace')[-2000:]!r}")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
