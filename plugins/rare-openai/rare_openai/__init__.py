"""Any OpenAI-compatible chat-completions endpoint as a rare-synth serving."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from rare import ChatRequest, Completion, LLMServing, ServingError, hookimpl

STRUCTURED_MODES = (None, "json_schema", "json_object")


def base_url_of(api_url: str) -> str:
    """The client's base URL from a full chat-completions URL (either form is accepted)."""
    url = api_url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def is_local(api_url: str) -> bool:
    host = urlsplit(api_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class APILLMServing_request(LLMServing):  # noqa: N801 - the reference's name
    """Chat completions through the ``openai`` client, ``max_workers`` requests at a time.

    The key comes from ``api_key``, else the environment variable ``key_name_of_api_key``,
    else ``OPENAI_API_KEY``; a local endpoint (127.0.0.1, localhost) needs none. The client
    retries timeouts, connection errors, 429 (honouring Retry-After) and 5xx with
    exponential backoff, ``max_retries`` times. ``structured_output`` sends the stage's JSON
    schema as ``response_format``: "json_schema" (OpenAI, vLLM, SGLang) or "json_object"
    (llama.cpp server, which accepts a schema beside it); None relies on the prompt.
    """

    def __init__(self, api_url: str = "https://api.openai.com/v1/chat/completions",
                 key_name_of_api_key: str = "DF_API_KEY", model_name: str = "gpt-4o",
                 max_workers: int = 5, api_key: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None, timeout: float = 120.0, max_retries: int = 5,
                 structured_output: str | None = None, context_window: int = 32768,
                 extra_body: dict[str, Any] | None = None) -> None:
        super().__init__(model_name=model_name, max_workers=max_workers,
                         temperature=temperature, max_tokens=max_tokens, seed=seed)
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - a dependency of this package
            raise ServingError("the openai package is missing: pip install openai") from exc
        if structured_output not in STRUCTURED_MODES:
            raise ServingError(f"structured_output must be one of {STRUCTURED_MODES}, "
                               f"got {structured_output!r}")
        key = api_key or os.environ.get(key_name_of_api_key) or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not is_local(api_url):
                raise ServingError(
                    f"no API key for {api_url}: pass api_key=... or set "
                    f"{key_name_of_api_key} (or OPENAI_API_KEY)"
                )
            key = "no-key-needed"
        self.api_url = api_url
        self.structured_output = structured_output
        self.context_window = context_window
        self.extra_body = extra_body or {}
        self.client = openai.OpenAI(base_url=base_url_of(api_url), api_key=key,
                                    timeout=timeout, max_retries=max_retries)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "api_url": self.api_url,
                "structured_output": self.structured_output, "extra_body": self.extra_body}

    def _response_format(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None or self.structured_output is None:
            return None
        if self.structured_output == "json_schema":
            return {"type": "json_schema",
                    "json_schema": {"name": "reply", "schema": schema, "strict": False}}
        return {"type": "json_object", "schema": schema}

    def complete(self, request: ChatRequest) -> Completion:
        kwargs: dict[str, Any] = {"model": self.model_name, "messages": request.messages}
        for name in ("temperature", "max_tokens", "seed"):
            value = getattr(request, name)
            value = getattr(self, name) if value is None else value
            if value is not None:
                kwargs[name] = value
        response_format = self._response_format(request.json_schema)
        if response_format is not None:
            kwargs["response_format"] = response_format
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        response = self.client.chat.completions.create(**kwargs)
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        if not getattr(response, "choices", None):
            return Completion(text=None, error="EmptyChoices: the reply had no choices",
                              prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        choice = response.choices[0]
        text = choice.message.content if choice.message is not None else None
        error = None if text else "EmptyReply: the reply had no content"
        return Completion(text=text, finish_reason=choice.finish_reason, error=error,
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def close(self) -> None:
        self.client.close()


@hookimpl
def register_servings(register):  # type: ignore[no-untyped-def]
    register(APILLMServing_request, aliases=("openai",))
