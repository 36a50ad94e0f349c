"""Any OpenAI-compatible chat-completions endpoint as a rare-synth serving.

The calls run on the executor's event loop, ``max_workers`` in flight, through one of three
HTTP transports (``http_client``): the ``openai`` package's async client, a bare
``aiohttp`` session, or ``asyncio``: a lean HTTP/1.1 client of this package
(:mod:`rare_openai.http11`) that writes each request from the call that makes it. Measured
against a 0.3 s endpoint on two cores, a call costs about 1.8 ms of CPU through the openai
client (its request transformation and its HTTP pool's per-request scan of every
connection), about 0.17 ms through aiohttp and about 0.1 ms through ``asyncio``; and
aiohttp (before Python 3.12) writes a request's body one turn of the loop later, so at 256
in flight a burst of replies holds back every slot's next request
(benchmarks/llm_throughput.py). ``"auto"`` (the default) takes the openai client up to 16
requests in flight and ``asyncio`` above (aiohttp where a proxy is set for the endpoint:
the lean client speaks to the endpoint directly). All give the same replies, retries and
failure reasons.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from typing import Any
from urllib.parse import urlsplit

from rare import ChatRequest, Completion, LLMServing, ServingError, hookimpl
from rare_openai import http11

STRUCTURED_MODES = (None, "json_schema", "json_object")
HTTP_CLIENTS = ("auto", "openai", "aiohttp", "asyncio")
#: above this many requests in flight, "auto" takes the lean client (see the module's doc)
AUTO_OPENAI_MAX_IN_FLIGHT = 16


def base_url_of(api_url: str) -> str:
    """The base URL (``.../v1``) from a full chat-completions URL (either form is accepted)."""
    url = api_url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def is_local(api_url: str) -> bool:
    host = urlsplit(api_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


#: the longest ``maxLength`` sent in "json_object" mode: llama.cpp's server turns the schema
#: into a grammar, and a string of {10,1200} characters makes its grammar parser fail and the
#: server die (SIGSEGV, llama-cpp-python 0.3.x); 1000 passes, so 800 leaves a margin
JSON_OBJECT_MAX_LENGTH = 800


def cap_string_lengths(schema: Any, limit: int) -> Any:
    """``schema`` with every ``maxLength`` (and ``minLength``) cut to ``limit``."""
    if isinstance(schema, list):
        return [cap_string_lengths(item, limit) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: cap_string_lengths(value, limit) for key, value in schema.items()}
    for key in ("maxLength", "minLength"):
        if isinstance(out.get(key), int) and out[key] > limit:
            out[key] = limit
    return out


#: statuses worth another try: request timeout, lock timeout, rate limit, server errors
RETRY_STATUSES = frozenset({408, 409, 429})


class CallFailed(Exception):
    """One HTTP attempt failed: ``reason`` is short and stable ("timeout", "http_429"...)."""

    def __init__(self, reason: str, detail: str, retry: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry = retry
        self.retry_after = retry_after


def retry_after_of(headers: Any) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms``, ``retry-after``), or None."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:  # an HTTP date
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _short(text: Any, limit: int = 160) -> str:
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first[:limit]


def env_proxy(url: str) -> str | None:
    """The proxy that ``HTTP_PROXY``/``HTTPS_PROXY`` (less ``NO_PROXY``) set for ``url``."""
    import urllib.request

    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def error_detail(body: bytes, status: int) -> str:
    """The message of an error body (``{"error": {"message": ...}}``), else its first line."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return _short(message)
    return _short(body.decode("utf-8", errors="replace")) or f"HTTP {status}"


class APILLMServing_request(LLMServing):  # noqa: N801 - the reference's name
    """Chat completions over HTTP, ``max_workers`` requests in flight.

    ``http_client``: ``"openai"`` (the openai package's async client), ``"asyncio"`` (a lean
    HTTP/1.1 client for hundreds of requests in flight on a small machine; no proxies),
    ``"aiohttp"`` (a bare aiohttp session) or ``"auto"`` (the openai client up to 16 in
    flight, ``asyncio`` above, aiohttp instead where a proxy is set for the endpoint).

    The key comes from ``api_key``, else the environment variable ``key_name_of_api_key``,
    else ``OPENAI_API_KEY``; a local endpoint (127.0.0.1, localhost) needs none.

    Each request gets up to ``max_retries`` more tries when it fails in a way that may pass:
    a timeout (``timeout`` seconds), a refused or dropped connection, HTTP 408/409/429/5xx,
    a body that is not valid JSON, or a reply without choices. The wait doubles from
    ``retry_backoff`` seconds up to ``retry_backoff_max`` (minus up to 25% jitter), or is
    what the server's Retry-After asks, up to ``max_retry_wait``. Other errors (400, 401,
    404...) fail at once. A failed request's ``error`` starts with a short, stable reason:
    ``timeout``, ``connection``, ``http_<status>``, ``malformed_body``, ``empty_choices``,
    ``empty_reply``, ``cancelled``; the run's summary counts failures by it.

    ``structured_output`` sends the stage's JSON schema as ``response_format``:
    "json_schema" (OpenAI, vLLM, SGLang) or "json_object" (llama.cpp server, which accepts a
    schema beside it); None relies on the prompt.
    """

    def __init__(self, api_url: str = "https://api.openai.com/v1/chat/completions",
                 key_name_of_api_key: str = "DF_API_KEY", model_name: str = "gpt-4o",
                 max_workers: int = 5, api_key: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None, timeout: float = 120.0, max_retries: int = 5,
                 structured_output: str | None = None, context_window: int = 32768,
                 extra_body: dict[str, Any] | None = None, retry_backoff: float = 0.5,
                 retry_backoff_max: float = 8.0, max_retry_wait: float = 60.0,
                 http_client: str = "auto") -> None:
        super().__init__(model_name=model_name, max_workers=max_workers,
                         temperature=temperature, max_tokens=max_tokens, seed=seed)
        if http_client not in HTTP_CLIENTS:
            raise ServingError(f"http_client must be one of {', '.join(HTTP_CLIENTS)}, "
                               f"got {http_client!r}")
        self.http_client = http_client
        self._endpoint = base_url_of(api_url) + "/chat/completions"
        if http_client == "auto":
            if max_workers <= AUTO_OPENAI_MAX_IN_FLIGHT:
                http_client = "openai"
            else:  # the lean client connects directly: through a proxy, aiohttp
                http_client = "aiohttp" if env_proxy(self._endpoint) else "asyncio"
        elif http_client == "asyncio" and env_proxy(self._endpoint):
            raise ServingError(f"http_client='asyncio' does not go through proxies, and one "
                               f"is set for {self._endpoint}: use 'aiohttp' (or 'auto')")
        self.transport = http_client
        try:
            import aiohttp
        except ImportError as exc:  # pragma: no cover - a dependency of this package
            raise ServingError("the aiohttp package is missing: pip install aiohttp") from exc
        self._openai: Any = None
        if self.transport == "openai":
            try:
                import openai
            except ImportError as exc:  # pragma: no cover - a dependency of this package
                raise ServingError("the openai package is missing: pip install openai "
                                   "(or set http_client='aiohttp')") from exc
            self._openai = openai
        if structured_output not in STRUCTURED_MODES:
            raise ServingError(f"structured_output must be one of {STRUCTURED_MODES}, "
                               f"got {structured_output!r}")
        if max_retries < 0 or timeout <= 0:
            raise ServingError(f"need max_retries >= 0 and timeout > 0, got {max_retries} "
                               f"and {timeout}")
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
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.max_retry_wait = max_retry_wait
        self._aiohttp = aiohttp
        self._headers = {"Authorization": f"Bearer {key}", "User-Agent": "rare-synth",
                         "Accept": "application/json"}
        self._key = key
        self._session: Any = None  # made on the executor's event loop, on first use
        self._proxy: str | None = None
        self._client: Any = None  # the openai client, likewise
        self._http: Any = None  # the lean asyncio client, likewise

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "api_url": self.api_url,
                "structured_output": self.structured_output, "extra_body": self.extra_body}

    def describe(self) -> str:
        return f"model {self.model_name!r} at {self.api_url}"

    def _response_format(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None or self.structured_output is None:
            return None
        if self.structured_output == "json_schema":
            return {"type": "json_schema",
                    "json_schema": {"name": "reply", "schema": schema, "strict": False}}
        return {"type": "json_object",
                "schema": cap_string_lengths(schema, JSON_OBJECT_MAX_LENGTH)}

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of the request; ``extra_body`` is merged in last."""
        body: dict[str, Any] = {"model": self.model_name, "messages": request.messages}
        for name in ("temperature", "max_tokens", "seed"):
            value = getattr(request, name)
            value = getattr(self, name) if value is None else value
            if value is not None:
                body[name] = value
        response_format = self._response_format(request.json_schema)
        if response_format is not None:
            body["response_format"] = response_format
        body.update(self.extra_body)
        return body

    def session(self) -> Any:
        """The HTTP session (made on the executor's loop): ``max_workers`` connections kept
        open. The environment's proxy is looked up once here, not by the session for every
        request (aiohttp's ``trust_env`` does that on a thread pool: two thread hops a call)."""
        if self._session is None:
            aiohttp = self._aiohttp
            self._proxy = env_proxy(self._endpoint)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_workers, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self._headers)
        return self._session

    def client(self) -> Any:
        """The openai async client (made on the executor's loop); our retries, not its own."""
        if self._client is None:
            # its pool allows far more connections than max_workers: the executor bounds them
            self._client = self._openai.AsyncOpenAI(
                base_url=base_url_of(self.api_url), api_key=self._key, timeout=self.timeout,
                max_retries=0)
        return self._client

    async def _attempt(self, body: dict[str, Any]) -> Completion:
        """One HTTP request: a Completion (ok, or failed for good), or CallFailed to retry."""
        if self.transport == "openai":
            return await self._attempt_openai(body)
        if self.transport == "asyncio":
            return await self._attempt_asyncio(body)
        return await self._attempt_aiohttp(body)

    async def _attempt_openai(self, body: dict[str, Any]) -> Completion:
        openai = self._openai
        kwargs = {k: v for k, v in body.items() if k in ("model", "messages", "temperature",
                                                          "max_tokens", "seed",
                                                          "response_format")}
        extra = {k: v for k, v in body.items() if k not in kwargs}
        if extra:
            kwargs["extra_body"] = extra
        try:
            response = await self.client().chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise CallFailed("timeout", f"no reply within {self.timeout:g} s", True) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise CallFailed("connection", _short(cause) or "connection error", True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            headers = exc.response.headers
            hint = headers.get("x-should-retry")
            retry = status in RETRY_STATUSES or status >= 500
            retry = hint == "true" or (retry and hint != "false")
            raise CallFailed(f"http_{status}", error_detail(exc.response.content, status),
                             retry, retry_after_of(headers)) from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            # json.JSONDecodeError and pydantic's ValidationError are ValueErrors
            raise CallFailed("malformed_body", _short(exc) or type(exc).__name__,
                             True) from None
        if isinstance(response, (str, bytes)):  # a non-JSON body comes back as text
            text = response if isinstance(response, str) else response.decode("utf-8", "replace")
            raise CallFailed("malformed_body", f"not a JSON body: {_short(text, 60)!r}", True)
        return read_reply(response.model_dump())

    async def _attempt_aiohttp(self, body: dict[str, Any]) -> Completion:
        aiohttp = self._aiohttp
        try:
            session = self.session()
            async with session.post(self._endpoint, json=body, proxy=self._proxy) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
                content_type = response.content_type
        except asyncio.TimeoutError:
            raise CallFailed("timeout", f"no reply within {self.timeout:g} s", True) from None
        except aiohttp.ClientPayloadError as exc:
            raise CallFailed("malformed_body", _short(exc) or "a broken body", True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CallFailed("connection", _short(exc) or type(exc).__name__, True) from None
        return read_response(status, headers, raw, content_type)

    async def _attempt_asyncio(self, body: dict[str, Any]) -> Completion:
        if self._http is None:
            self._http = http11.Client(self._endpoint, self._headers, self.max_workers)
        try:
            # the bytes aiohttp's json= sends
            reply = await self._http.post(json.dumps(body).encode(), self.timeout)
        except asyncio.TimeoutError:
            raise CallFailed("timeout", f"no reply within {self.timeout:g} s", True) from None
        except http11.ProtocolError as exc:
            raise CallFailed("malformed_body", _short(exc) or "a broken body", True) from None
        except OSError as exc:
            raise CallFailed("connection", _short(exc) or type(exc).__name__, True) from None
        return read_response(reply.status, reply.headers, reply.body, reply.content_type)

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based), with up to 25% jitter off."""
        base = min(self.retry_backoff * 2.0 ** (retry - 1), self.retry_backoff_max)
        return base * (1.0 - 0.25 * random.random())

    def after_failure(self, failure: CallFailed, attempt: int) -> tuple[Completion, float | None]:
        """The failed completion of ``attempt``, and the seconds to wait before the next
        (None: no next attempt)."""
        error = f"{failure.reason}: {failure.detail}"
        if attempt > 1:
            error += f" (after {attempt} attempts)"
        failed = Completion(text=None, error=error, attempts=attempt)
        if not failure.retry or attempt > self.max_retries:
            return failed, None
        wait = failure.retry_after
        if wait is None:
            return failed, self.backoff(attempt)
        if wait > self.max_retry_wait:
            failed.error = (f"{error}; the server asked to wait {wait:g} s, more than "
                            f"max_retry_wait={self.max_retry_wait:g}")
            return failed, None
        return failed, wait

    async def acomplete(self, request: ChatRequest) -> Completion:
        body = self._body(request)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._attempt(body)
                result.attempts = attempt
                return result
            except CallFailed as failure:
                failed, wait = self.after_failure(failure, attempt)
                if wait is None:
                    return failed
                if not await self.asleep_unless_cancelled(wait):
                    failed.error = f"cancelled: stopped while retrying ({failed.error})"
                    return failed

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        http, self._http = self._http, None
        if http is not None:
            http.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def read_response(status: int, headers: Any, raw: bytes, content_type: str) -> Completion:
    """The completion in an HTTP reply (``headers``: a case-insensitive mapping, or a dict
    with lower-cased names), or CallFailed."""
    if status >= 400:
        hint = headers.get("x-should-retry")
        retry = status in RETRY_STATUSES or status >= 500
        retry = hint == "true" or (retry and hint != "false")
        raise CallFailed(f"http_{status}", error_detail(raw, status), retry,
                         retry_after_of(headers))
    try:
        data = json.loads(raw)
    except ValueError as exc:
        if "json" not in content_type:
            text = raw.decode("utf-8", errors="replace")
            raise CallFailed("malformed_body", f"not a JSON body: {_short(text, 60)!r}",
                             True) from None
        raise CallFailed("malformed_body", _short(exc) or type(exc).__name__, True) from None
    return read_reply(data)


def read_reply(data: Any) -> Completion:
    """The completion in a chat-completions body, or CallFailed when there is none."""
    if not isinstance(data, dict) or not isinstance(data.get("choices", []), list):
        raise CallFailed("malformed_body", "the body is not a chat completion", True)
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    prompt_tokens = usage.get("prompt_tokens") or 0
    completion_tokens = usage.get("completion_tokens") or 0
    choices = data.get("choices")
    if choices is None:
        raise CallFailed("malformed_body", "the body has no 'choices'", True)
    if not choices:
        raise CallFailed("empty_choices", "the reply had no choices", True)
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    finish = choice.get("finish_reason")
    error = None
    if not isinstance(text, str) or not text:
        # not retried here: the same request tends to give the same empty reply; the
        # stages ask again with another seed
        error = f"empty_reply: the reply had no content (finish_reason={finish})"
        text = None
    return Completion(text=text, finish_reason=finish, error=error,
                      prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens))


@hookimpl
def register_servings(register):  # type: ignore[no-untyped-def]
    register(APILLMServing_request, aliases=("openai",))
