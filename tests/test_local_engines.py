"""The in-process engine servings without their engines: the names users know, settings,
errors and the engine pool. vLLM itself runs in tests/test_vllm.py (``make test-vllm``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from rare import plugins
from rare.errors import MissingDependencyError, ServingError, SettingsError
from rare.llm.local import EnginePrompt, _EnginePool


def test_the_reference_names_import_from_rare_serving():
    from rare.serving import (
        LocalModelLLMServing,
        LocalModelLLMServing_sglang,
        LocalModelLLMServing_vllm,
    )

    assert LocalModelLLMServing is LocalModelLLMServing_vllm
    assert LocalModelLLMServing_sglang.__module__ == "rare_sglang"
    assert plugins.get("servings", "vllm") is LocalModelLLMServing_vllm
    assert plugins.get("servings", "sglang") is LocalModelLLMServing_sglang


def test_rare_plugins_lists_them():
    out = subprocess.run([sys.executable, "-m", "rare.cli", "plugins"], capture_output=True,
                         text=True, check=True).stdout
    assert "LocalModelLLMServing_vllm" in out and "LocalModelLLMServing_sglang" in out


def test_unknown_settings_are_named_with_a_suggestion():
    from rare import serving

    with pytest.raises(SettingsError, match="Did you mean 'vllm_max_model_len'"):
        serving.create("vllm", hf_model_name_or_path="org/model", vllm_max_model_lenn=2048)
    with pytest.raises(SettingsError, match="Did you mean 'sgl_max_new_tokens'"):
        serving.create("sglang", hf_model_name_or_path="org/model", sgl_max_new_token=10)


def test_reference_and_own_names_set_the_same_thing(tmp_path):
    from rare.serving import LocalModelLLMServing, LocalModelLLMServing_sglang

    (tmp_path / "config.json").write_text('{"max_position_embeddings": 4096}')
    ours = LocalModelLLMServing(model=str(tmp_path), max_model_len=1024, temperature=0.2,
                                max_tokens=64, seed=3, tensor_parallel_size=2)
    theirs = LocalModelLLMServing(hf_model_name_or_path=str(tmp_path), vllm_max_model_len=1024,
                                  vllm_temperature=0.2, vllm_max_tokens=64, vllm_seed=3,
                                  vllm_tensor_parallel_size=2)
    assert ours.settings() == theirs.settings()
    assert ours.context_window == 1024
    assert LocalModelLLMServing(model=str(tmp_path)).context_window == 4096  # the model's own
    with pytest.raises(ServingError, match="give one of them"):
        LocalModelLLMServing(model=str(tmp_path), hf_model_name_or_path="/elsewhere")
    with pytest.raises(ServingError, match="vllm_gpu_memory_utilization"):
        LocalModelLLMServing(model=str(tmp_path), vllm_gpu_memory_utilization=1.5)
    sgl = LocalModelLLMServing_sglang(hf_model_name_or_path=str(tmp_path), sgl_tp_size=2,
                                      sgl_max_new_tokens=99)
    assert sgl.tensor_parallel_size == 2 and sgl.max_tokens == 99
    with pytest.raises(ServingError, match="sgl_mem_fraction_static"):
        LocalModelLLMServing_sglang(model=str(tmp_path), sgl_mem_fraction_static=0)
    # an older SGLang release's names still work, and conflict like any other pair
    older = LocalModelLLMServing_sglang(model=str(tmp_path), sgl_tensor_parallel_size=2,
                                        sgl_max_tokens=99)
    assert older.settings() == sgl.settings()
    with pytest.raises(ServingError, match="sgl_tp_size=2 and sgl_tensor_parallel_size=4"):
        LocalModelLLMServing_sglang(model=str(tmp_path), sgl_tp_size=2,
                                    sgl_tensor_parallel_size=4)
    for serving, name in ((LocalModelLLMServing, "vllm_tensor_parallel_size"),
                          (LocalModelLLMServing_sglang, "sgl_tp_size")):
        with pytest.raises(ServingError, match=f"{name} \\(or tensor_parallel_size\\) must "
                                               "be >= 1, got 0"):
            serving(model=str(tmp_path), tensor_parallel_size=0)


def test_a_missing_model_directory_fails_at_once_naming_the_setting(tmp_path):
    from rare.serving import LocalModelLLMServing, LocalModelLLMServing_sglang

    for cls in (LocalModelLLMServing, LocalModelLLMServing_sglang):
        with pytest.raises(ServingError, match="hf_model_name_or_path") as err:
            cls(hf_model_name_or_path=str(tmp_path / "no-such-model"))
        assert "no-such-model" in str(err.value)
        with pytest.raises(ServingError, match="no model given"):
            cls()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_without_vllm_the_error_gives_the_install_line(tmp_path):
    from rare.serving import LocalModelLLMServing

    (tmp_path / "config.json").write_text("{}")
    serving = LocalModelLLMServing(model=str(tmp_path))
    for use in (serving.start_serving, lambda: serving.count_tokens("a few words")):
        with pytest.raises(MissingDependencyError, match="pip install vllm") as err:
            use()
        assert "python -m rare_vllm.install_cpu" in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("sglang") is not None,
                    reason="SGLang is installed")
def test_without_sglang_the_error_gives_the_install_line(tmp_path):
    from rare.serving import LocalModelLLMServing_sglang

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingDependencyError, match=r'pip install "sglang\[all\]"'):
        LocalModelLLMServing_sglang(model=str(tmp_path)).start_serving()


def test_sglang_sampling_parameters():
    from rare_sglang import LocalModelLLMServing_sglang

    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    params = LocalModelLLMServing_sglang.sampling(EnginePrompt(
        token_ids=[1, 2], max_tokens=50, temperature=0.3, top_p=0.8, top_k=20,
        repetition_penalty=1.1, seed=5, json_schema=schema))
    assert params == {"max_new_tokens": 50, "temperature": 0.3, "top_p": 0.8, "top_k": 20,
                      "repetition_penalty": 1.1, "sampling_seed": 5,
                      "json_schema": '{"type": "object", "properties": {"q": {"type": '
                                     '"string"}}}'}


def test_the_engine_pool_shares_and_stops_once():
    pool = _EnginePool()
    started: list[object] = []

    def start() -> object:
        started.append(object())
        return started[-1]

    a = pool.acquire(("m", 1), start)
    b = pool.acquire(("m", 1), start)
    c = pool.acquire(("m", 2), start)
    assert a is b and a is not c and len(started) == 2
    assert pool.release(("m", 1)) is False  # b still holds it
    assert pool.release(("m", 1)) is True   # the last one out stops it
    assert pool.release(("m", 2)) is True and len(pool) == 0
    assert pool.acquire(("m", 1), start) is not a  # a new engine after the last release


def test_the_vllm_schema_is_closed():
    from rare_vllm import closed_schema

    open_schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    assert closed_schema(open_schema)["additionalProperties"] is False
    assert "additionalProperties" not in open_schema
    explicit = {**open_schema, "additionalProperties": True}
    assert closed_schema(explicit) is explicit
