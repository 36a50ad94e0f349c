"""What in-process engines (vLLM, SGLang) share: the model's own tokenizer, exact context
checks, and one engine loaded lazily and released by ``close()``.

An engine serving builds every prompt with the model's chat template and counts it with
the model's tokenizer, so a stage cuts its documents to fit the context window exactly
(:meth:`LocalEngineServing.truncate`), and a prompt that still does not fit fails its own
row with the reason instead of failing the batch. The engine itself starts on the first
batch: creating the serving, listing plugins or checking settings costs nothing.

A subclass implements :meth:`LocalEngineServing.start_engine` (load the model),
:meth:`LocalEngineServing.generate_tokens` (one engine call for a whole batch of token-id
prompts) and :meth:`LocalEngineServing.stop_engine`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rare.errors import MissingDependencyError, ServingError
from rare.llm.serving import LLMServing
from rare.llm.types import ChatRequest, Completion, error_reason


@dataclass
class EnginePrompt:
    """One request as the engine gets it: the templated prompt's token ids and sampling."""

    token_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    seed: int | None
    json_schema: dict[str, Any] | None


@dataclass
class EngineOutput:
    """What the engine answered for one prompt (or why it could not)."""

    text: str | None
    finish_reason: str | None = None
    completion_tokens: int = 0
    error: str | None = None


def pick(ours: Any, theirs: Any, our_name: str, their_name: str, default: Any) -> Any:
    """One setting given under our name or the reference's, never both with two values."""
    if ours is not None and theirs is not None and ours != theirs:
        raise ServingError(f"{our_name}={ours!r} and {their_name}={theirs!r} set the same "
                           f"thing: give one of them")
    if ours is not None:
        return ours
    return default if theirs is None else theirs


#: the defaults of the settings every in-process engine has (our names)
ENGINE_DEFAULTS: dict[str, Any] = {
    "model": None, "cache_dir": None, "local_dir": None, "max_model_len": None,
    "temperature": 0.7, "top_p": 0.9, "top_k": 40, "max_tokens": 1024,
    "repetition_penalty": 1.0, "seed": 42, "tensor_parallel_size": 1,
}


def looks_like_path(name: str) -> bool:
    """Whether a model name is meant as a local path rather than a hub id."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


class LocalEngineServing(LLMServing):
    """Base class of the in-process engine servings; see the module's docstring.

    ``model`` is a local directory in Hugging Face format or a hub id (downloaded into
    ``cache_dir``, or into ``local_dir`` as plain files). ``max_model_len`` is the context
    window, prompt and reply together (default: the model's own). ``engine_options`` go to
    the engine's constructor unchanged.
    """

    #: the engine's name in messages ("vLLM", "SGLang")
    engine_name = "engine"
    #: the setting names users know, for error messages: our name -> the reference's
    reference_names: dict[str, str] = {}
    #: the pip line that installs the engine
    install_hint = ""
    failure_hint = ("The engine's own log above says why (a dead engine stays dead: run "
                    "again, and it resumes)")

    #: older names of the reference's (old name -> the reference's name today)
    older_names: dict[str, str] = {}

    @classmethod
    def resolve_settings(cls, given: dict[str, Any],
                         defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Our settings (:data:`ENGINE_DEFAULTS` and ``defaults``), each taken from
        ``given`` (a constructor's arguments) under our name or the reference's
        (:attr:`reference_names`, or one of its :attr:`older_names`), never both with two
        values; else its default."""
        given = dict(given)
        for old, theirs in cls.older_names.items():
            given[theirs] = pick(given.get(theirs), given.get(old), theirs, old, None)
        resolved: dict[str, Any] = {}
        for ours, default in {**ENGINE_DEFAULTS, **(defaults or {})}.items():
            theirs = cls.reference_names.get(ours, ours)
            resolved[ours] = pick(given.get(ours), given.get(theirs), ours, theirs, default)
        return resolved

    def __init__(self, model: str, *, cache_dir: str | None = None,
                 local_dir: str | None = None, max_model_len: int | None = None,
                 temperature: float = 0.7, top_p: float = 0.9, top_k: int = 40,
                 max_tokens: int = 1024, repetition_penalty: float = 1.0, seed: int = 42,
                 tensor_parallel_size: int = 1, batch_size: int | None = None,
                 engine_options: dict[str, Any] | None = None) -> None:
        if int(tensor_parallel_size) < 1:
            raise ServingError(f"{self.setting_name('tensor_parallel_size')} must be >= 1, "
                               f"got {tensor_parallel_size}")
        self.tensor_parallel_size = int(tensor_parallel_size)
        if not model:
            raise ServingError(f"{self.engine_name}: no model given; set "
                               f"{self.setting_name('model')} to a local directory in Hugging "
                               "Face format or a hub id")
        super().__init__(model_name=model, max_workers=1, temperature=temperature,
                         max_tokens=max_tokens, seed=seed)
        self.model = model
        self.cache_dir = cache_dir
        self.local_dir = local_dir
        self.top_p = top_p
        self.top_k = top_k
        self.repetition_penalty = repetition_penalty
        self.max_model_len = max_model_len
        self.batch_size = batch_size
        self.engine_options = dict(engine_options or {})
        self._engine: Any = None
        self._tokenizer: Any = None
        self._model_dir: str | None = None
        self._engine_lock = threading.Lock()
        if looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise ServingError(f"{self.engine_name}: there is no model directory at {model!r} "
                               f"(setting {self.setting_name('model')}); give a directory in "
                               "Hugging Face format (config.json, tokenizer, weights) or a "
                               "hub id")

    # -- names -----------------------------------------------------------------------------
    def setting_name(self, ours: str) -> str:
        """How messages name a setting: the reference's name, and ours beside it."""
        theirs = self.reference_names.get(ours)
        return f"{theirs} (or {ours})" if theirs else ours

    def describe(self) -> str:
        return f"{self.model} on {self.engine_name} (in process)"

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "engine": self.engine_name, "top_p": self.top_p,
                "top_k": self.top_k, "repetition_penalty": self.repetition_penalty,
                "max_model_len": self.context_window,
                "tensor_parallel_size": self.tensor_parallel_size}

    # -- the model's files, tokenizer and context ------------------------------------------
    def model_dir(self) -> str:
        """Where the model's files are: the local directory, or the hub id downloaded."""
        if self._model_dir is None:
            path = Path(self.model).expanduser()
            if path.is_dir():
                self._model_dir = str(path)
            else:
                try:
                    from huggingface_hub import snapshot_download
                except ImportError:
                    raise MissingDependencyError(
                        "huggingface_hub is needed to download a model; install it with: "
                        "pip install huggingface_hub") from None
                try:
                    self._model_dir = snapshot_download(self.model, cache_dir=self.cache_dir,
                                                        local_dir=self.local_dir)
                except Exception as exc:
                    raise ServingError(
                        f"{self.engine_name}: could not get model {self.model!r} "
                        f"({error_reason(exc)}); set {self.setting_name('model')} to a local "
                        "directory, or check the hub id and the network") from exc
        return self._model_dir

    def check_installed(self) -> None:
        """Raise MissingDependencyError, with the install line, when the engine is missing."""

    @property
    def tokenizer(self) -> Any:
        """The model's own tokenizer (transformers), loaded without starting the engine."""
        if self._tokenizer is None:
            self.check_installed()
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise MissingDependencyError(
                    f"transformers is not installed; it comes with {self.engine_name}: "
                    f"{self.install_hint}") from None
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir())
        return self._tokenizer

    @property
    def context_window(self) -> int:
        """``max_model_len`` when set, else the model's own maximum from its config."""
        if self.max_model_len is None:
            config = Path(self.model_dir()) / "config.json"
            try:
                data = json.loads(config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ServingError(f"{self.engine_name}: cannot read {config} "
                                   f"({error_reason(exc)}); set "
                                   f"{self.setting_name('max_model_len')}") from exc
            self.max_model_len = int(data.get("max_position_embeddings") or 4096)
        return self.max_model_len

    @context_window.setter
    def context_window(self, value: int) -> None:
        self.max_model_len = value

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return text, False
        return self.tokenizer.decode(ids[:max(0, max_tokens)], skip_special_tokens=True), True

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The request through the model's chat template, as token ids."""
        ids = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                 tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    # -- the engine ------------------------------------------------------------------------
    def engine_key(self) -> tuple[Any, ...]:
        """What makes two servings' engines the same: servings of one process with equal
        keys share one engine (sampling settings are per request and do not count)."""
        return (type(self).__name__, str(Path(self.model).expanduser()), self.context_window,
                self.tensor_parallel_size,
                json.dumps(self.engine_options, sort_keys=True, default=str))

    def start_engine(self) -> Any:
        """Load the model and return the engine; raise ServingError with the setting to
        change when it cannot start."""
        raise NotImplementedError

    def generate_tokens(self, prompts: list[EnginePrompt]) -> list[EngineOutput]:
        """One engine call for the whole batch, one output per prompt, in order."""
        raise NotImplementedError

    def stop_engine(self, engine: Any) -> None:
        """Release the engine (its memory, its worker processes)."""

    @property
    def engine(self) -> Any:
        """The engine, started on first use (or the one another serving already started
        with the same :meth:`engine_key`)."""
        with self._engine_lock:
            if self._engine is None:
                self.check_installed()
                self._engine = _ENGINES.acquire(self.engine_key(), self.start_engine)
            return self._engine

    def start_serving(self) -> None:
        """Start the engine now rather than on the first batch (the reference's name)."""
        self.engine  # noqa: B018

    def cleanup(self) -> None:
        """The reference's name for :meth:`close`."""
        self.close()

    def engine_prompt(self, request: ChatRequest, ids: list[int]) -> EnginePrompt:
        temperature = self.temperature if request.temperature is None else request.temperature
        return EnginePrompt(
            token_ids=ids,
            max_tokens=int(request.max_tokens or self.max_tokens or 512),
            temperature=0.7 if temperature is None else float(temperature),
            top_p=self.top_p, top_k=self.top_k, repetition_penalty=self.repetition_penalty,
            seed=self.seed if request.seed is None else request.seed,
            json_schema=request.json_schema)

    def complete_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        """Every request that fits goes to the engine in one call; one that does not fit
        fails alone, as does one the engine rejects when the batch call fails."""
        window = self.context_window
        results: list[Completion | None] = [None] * len(requests)
        todo: list[int] = []
        prompts: list[EnginePrompt] = []
        for i, request in enumerate(requests):
            ids = self.prompt_ids(request)
            if len(ids) >= window:
                results[i] = Completion(
                    text=None, prompt_tokens=len(ids),
                    error=f"context_overflow: the prompt has {len(ids)} tokens and "
                          f"{self.setting_name('max_model_len')} is {window}")
                continue
            prompt = self.engine_prompt(request, ids)
            prompt.max_tokens = max(1, min(prompt.max_tokens, window - len(ids)))
            todo.append(i)
            prompts.append(prompt)
        if prompts:
            self.engine  # noqa: B018 - a start failure is the serving's, not each row's
            try:
                outputs = self.generate_tokens(prompts)
            except (ServingError, MissingDependencyError):
                raise
            except Exception:
                if len(prompts) == 1:
                    raise
                outputs = [self._one(p) for p in prompts]  # find the request that fails
            for i, prompt, out in zip(todo, prompts, outputs, strict=True):
                results[i] = Completion(
                    text=out.text, finish_reason=out.finish_reason,
                    prompt_tokens=len(prompt.token_ids),
                    completion_tokens=out.completion_tokens,
                    error=out.error or (None if out.text else
                                        "empty_reply: the engine returned no text"))
        done = [r for r in results if r is not None]
        assert len(done) == len(requests)
        return done

    def _one(self, prompt: EnginePrompt) -> EngineOutput:
        try:
            return self.generate_tokens([prompt])[0]
        except Exception as exc:
            return EngineOutput(text=None, error=f"engine_error: {error_reason(exc)}")

    def close(self) -> None:
        """Release this serving's hold on the engine; the last one out stops it."""
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None and _ENGINES.release(self.engine_key()):
            self.stop_engine(engine)
        super().close()


class _EnginePool:
    """The engines of this process, shared by servings with equal keys, counted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engines: dict[tuple[Any, ...], list[Any]] = {}  # key -> [engine, holders]

    def acquire(self, key: tuple[Any, ...], start: Any) -> Any:
        with self.lock:
            held = self.engines.get(key)
            if held is None:
                held = self.engines[key] = [start(), 0]
            held[1] += 1
            return held[0]

    def release(self, key: tuple[Any, ...]) -> bool:
        """Drop one hold; True when it was the last (the caller stops the engine)."""
        with self.lock:
            held = self.engines.get(key)
            if held is None:
                return True
            held[1] -= 1
            if held[1] > 0:
                return False
            del self.engines[key]
            return True

    def __len__(self) -> int:
        return len(self.engines)


_ENGINES = _EnginePool()
