"""SGLang in process (``LocalModelLLMServing_sglang``) on a real engine. SGLang needs a CUDA
or ROCm GPU: where it is not installed these tests skip with that reason (on this project's
CPU machines, always). The model is ``$RARE_SGLANG_MODEL``, else the SmolLM2-135M directory
that ``make test-vllm`` converts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO

from rare import ChatRequest

pytest.importorskip("sglang", reason="SGLang is not installed (it needs a CUDA or ROCm GPU): "
                                     "pip install \"sglang[all]\" on a GPU machine")
pytestmark = pytest.mark.slow

MODEL = Path(os.environ.get("RARE_SGLANG_MODEL",
                            REPO / ".venv-vllm" / "models" / "SmolLM2-135M-Instruct")).resolve()


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from rare.serving import LocalModelLLMServing_sglang

    if not (MODEL / "config.json").is_file():
        pytest.skip(f"no model at {MODEL}: set RARE_SGLANG_MODEL to a Hugging Face directory")
    serving = LocalModelLLMServing_sglang(hf_model_name_or_path=str(MODEL),
                                          sgl_context_length=2048, sgl_max_new_tokens=64,
                                          sgl_mem_fraction_static=0.5)
    serving.use_cache(False)
    serving.start_serving()
    yield serving
    serving.close()


def test_a_batch_with_a_prompt_too_long(engine):
    requests = [ChatRequest.from_prompt(f"Name one bone of the human {p}.", max_tokens=16)
                for p in ("hand", "foot", "skull")]
    requests.append(ChatRequest.from_prompt("anatomy " * 3000))
    out = engine.generate(requests)
    assert all(c.ok and 0 < c.completion_tokens <= 16 for c in out[:3])
    assert out[3].error is not None and out[3].error.startswith("context_overflow")
    assert "sgl_context_length" in out[3].error


def test_json_from_constrained_decoding(engine):
    schema = {"type": "object", "required": ["question"],
              "properties": {"question": {"type": "string", "pattern": "^[A-Z][^?]{8,80}\\?$"}}}
    reply = engine.generate([ChatRequest.from_prompt("Ask about the heart.", json_schema=schema,
                                                     max_tokens=80)])[0]
    assert reply.ok, reply.error
    assert json.loads(reply.text)["question"].endswith("?")
