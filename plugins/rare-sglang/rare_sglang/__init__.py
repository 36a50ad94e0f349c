"""SGLang's offline engine in process: ``LocalModelLLMServing_sglang`` (``--serving sglang``).

Written against ``sglang.Engine``: the engine starts on the first batch and stops in
``close()``; every batch goes to ``Engine.generate`` in one call as token ids built with
the model's chat template; JSON replies use SGLang's ``json_schema`` constrained decoding.
The reference's argument names (``hf_model_name_or_path``, ``sgl_max_new_tokens``,
``sgl_tp_size``, ...) and ours (``model``, ``max_tokens``, ...) both work.

SGLang needs an NVIDIA or AMD GPU (its CPU backend targets Xeons with AMX): it was not run
on the machines this project is tested on, and its tests skip where SGLang is missing.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

from rare import MissingDependencyError, hookimpl
from rare.errors import ServingError
from rare.llm.local import EngineOutput, EnginePrompt, LocalEngineServing
from rare.llm.types import error_reason

INSTALL = 'pip install "sglang[all]"  (needs a CUDA or ROCm GPU)'

REFERENCE_NAMES = {
    "model": "hf_model_name_or_path", "cache_dir": "hf_cache_dir", "local_dir": "hf_local_dir",
    "tensor_parallel_size": "sgl_tp_size", "data_parallel_size": "sgl_dp_size",
    "mem_fraction_static": "sgl_mem_fraction_static", "temperature": "sgl_temperature",
    "top_p": "sgl_top_p", "top_k": "sgl_top_k", "max_tokens": "sgl_max_new_tokens",
    "max_model_len": "sgl_context_length", "repetition_penalty": "sgl_repetition_penalty",
    "seed": "sgl_seed",
}


def sglang_available() -> bool:
    return importlib.util.find_spec("sglang") is not None


class LocalModelLLMServing_sglang(LocalEngineServing):  # noqa: N801 - the reference's name
    """A model run by SGLang's offline engine in this process; see the module's docstring."""

    engine_name = "SGLang"
    reference_names = REFERENCE_NAMES
    #: an older release's names
    older_names = {"sgl_tensor_parallel_size": "sgl_tp_size",
                   "sgl_max_tokens": "sgl_max_new_tokens"}
    install_hint = INSTALL

    def __init__(self, hf_model_name_or_path: str | None = None,
                 hf_cache_dir: str | None = None, hf_local_dir: str | None = None,
                 sgl_tp_size: int | None = None, sgl_dp_size: int | None = None,
                 sgl_mem_fraction_static: float | None = None,
                 sgl_max_new_tokens: int | None = None, sgl_temperature: float | None = None,
                 sgl_top_p: float | None = None, sgl_top_k: int | None = None,
                 sgl_repetition_penalty: float | None = None, sgl_seed: int | None = None,
                 sgl_context_length: int | None = None,
                 sgl_tensor_parallel_size: int | None = None,
                 sgl_max_tokens: int | None = None, *,
                 model: str | None = None, cache_dir: str | None = None,
                 local_dir: str | None = None, tensor_parallel_size: int | None = None,
                 data_parallel_size: int | None = None,
                 mem_fraction_static: float | None = None, temperature: float | None = None,
                 top_p: float | None = None, top_k: int | None = None,
                 max_tokens: int | None = None, repetition_penalty: float | None = None,
                 seed: int | None = None, max_model_len: int | None = None,
                 batch_size: int | None = None,
                 engine_options: dict[str, Any] | None = None) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        settings = self.resolve_settings(given, {"data_parallel_size": 1,
                                                 "mem_fraction_static": None})
        self.data_parallel_size = int(settings.pop("data_parallel_size"))
        self.mem_fraction_static = settings.pop("mem_fraction_static")
        if self.mem_fraction_static is not None and not 0 < self.mem_fraction_static <= 1:
            raise ServingError(f"{self.setting_name('mem_fraction_static')} must be in "
                               f"(0, 1], got {self.mem_fraction_static}")
        super().__init__(settings.pop("model") or "", **settings, batch_size=batch_size,
                         engine_options=engine_options)

    def engine_key(self) -> tuple[Any, ...]:
        return (*super().engine_key(), self.data_parallel_size, self.mem_fraction_static)

    def check_installed(self) -> None:
        if not sglang_available():
            raise MissingDependencyError(f"SGLang is not installed. Install it with: {INSTALL}")

    def start_engine(self) -> Any:
        try:
            import sglang
        except Exception as exc:
            raise ServingError(f"SGLang is installed but does not import "
                               f"({error_reason(exc)}); it needs a CUDA or ROCm GPU and the "
                               f"torch it was built for: {INSTALL}") from exc
        options: dict[str, Any] = {
            "model_path": self.model_dir(), "tp_size": self.tensor_parallel_size,
            "dp_size": self.data_parallel_size, "context_length": self.context_window,
            "random_seed": self.seed, "log_level": "error",
        }
        if self.mem_fraction_static is not None:
            options["mem_fraction_static"] = self.mem_fraction_static
        options.update(self.engine_options)
        try:
            return sglang.Engine(**options)
        except Exception as exc:
            text = str(exc).lower()
            hint = (f"lower {self.setting_name('mem_fraction_static')} or "
                    f"{self.setting_name('max_model_len')}" if "memory" in text else
                    f"check {self.setting_name('model')}, "
                    f"{self.setting_name('tensor_parallel_size')} and the GPU")
            raise ServingError(f"SGLang could not start {self.model!r} "
                               f"({error_reason(exc)}); {hint}") from exc

    @staticmethod
    def sampling(prompt: EnginePrompt) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_new_tokens": prompt.max_tokens, "temperature": prompt.temperature,
            "top_p": prompt.top_p, "top_k": prompt.top_k,
            "repetition_penalty": prompt.repetition_penalty,
        }
        if prompt.seed is not None:
            params["sampling_seed"] = prompt.seed
        if prompt.json_schema is not None:
            params["json_schema"] = json.dumps(prompt.json_schema)
        return params

    def generate_tokens(self, prompts: list[EnginePrompt]) -> list[EngineOutput]:
        outputs = self.engine.generate(input_ids=[p.token_ids for p in prompts],
                                       sampling_params=[self.sampling(p) for p in prompts])
        if isinstance(outputs, dict):
            outputs = [outputs]
        results = []
        for out in outputs:
            meta = out.get("meta_info") or {}
            finish = meta.get("finish_reason")
            reason = finish.get("type") if isinstance(finish, dict) else finish
            results.append(EngineOutput(text=out.get("text"), finish_reason=reason,
                                        completion_tokens=int(meta.get("completion_tokens")
                                                              or 0)))
        return results

    def stop_engine(self, engine: Any) -> None:
        engine.shutdown()


@hookimpl
def register_servings(register):  # type: ignore[no-untyped-def]
    register(LocalModelLLMServing_sglang, aliases=("sglang",))
