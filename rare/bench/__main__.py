"""``python -m rare.bench SPEC RESULT``: the worker process of one backend at one thread
count (see :mod:`rare.bench.worker`)."""

from __future__ import annotations

import sys

from rare.bench.worker import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
