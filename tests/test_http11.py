"""The lean HTTP/1.1 client of rare-openai (``http_client="asyncio"``), against scripted
servers: what it sends, the reply forms it reads, keep-alive, limits and failures."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rare_openai import APILLMServing_request, http11

from rare.errors import ServingError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]],
                   Awaitable[None]]


def ok(body: bytes = b'{"a": 1}', extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            % len(body) + extra + b"\r\n" + body)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, await reader.readexactly(length)


def scripted(*replies: bytes | None) -> Handler:
    """Answer the n-th request (over all connections) with ``replies[n]``; None: close
    the connection without a reply."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     state: dict[str, Any]) -> None:
        try:
            while True:
                head, body = await read_request(reader)
                state["requests"].append((head, body))
                reply = replies[min(len(state["requests"]), len(replies)) - 1]
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
    return handle


def run(handler: Handler, client_step: Callable[[str, dict[str, Any]], Awaitable[Any]],
        loop: str = "asyncio") -> tuple[Any, dict[str, Any]]:
    state: dict[str, Any] = {"requests": [], "connections": 0, "open": 0, "most_open": 0}

    async def main() -> Any:
        async def on_connect(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
            state["connections"] += 1
            state["open"] += 1
            state["most_open"] = max(state["most_open"], state["open"])
            try:
                await handler(reader, writer, state)
            finally:
                state["open"] -= 1
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            result = await client_step(f"http://127.0.0.1:{port}/v1/chat/completions", state)
            for _ in range(100):  # the handlers see the client's connections close
                if not state["open"]:
                    break
                await asyncio.sleep(0.01)
            return result

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main()), state
    return asyncio.run(main()), state


LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_goes_out_whole_and_connections_are_kept_alive(loop):
    async def step(url: str, state: dict[str, Any]) -> Any:
        client = http11.Client(url, {"Authorization": "Bearer k", "User-Agent": "t"}, 4)
        replies = [await client.post(b'{"n": %d}' % i, 5.0) for i in range(3)]
        client.close()
        return replies

    replies, state = run(scripted(ok()), step, loop)
    assert [r.status for r in replies] == [200, 200, 200]
    assert replies[0].body == b'{"a": 1}' and replies[0].content_type == "application/json"
    assert state["connections"] == 1  # one connection, kept alive
    head, body = state["requests"][1]
    assert body == b'{"n": 1}'
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    port = int(lines[1].split(":")[-1])
    assert lines[1] == f"Host: 127.0.0.1:{port}"
    assert {"Content-Type: application/json", "Content-Length: 8", "Authorization: Bearer k",
            "User-Agent: t", "Accept-Encoding: gzip, deflate"} <= set(lines)


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Twice: a\r\nx-twice: b\r\n\r\n"
           b"4;ext=1\r\n{\"a\"\r\n5\r\n: 12}\r\n0\r\nTrailer: t\r\n\r\n")
GZIPPED = ok(gzip.compress(b'{"a": 2}'), b"Content-Encoding: gzip\r\n")
DEFLATED = ok(zlib.compress(b'{"a": 3}'), b"Content-Encoding: deflate\r\n")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b'{"a": 4}')


async def two_posts(url: str, state: dict[str, Any]) -> Any:
    """Two requests through one client: the replies."""
    client = http11.Client(url, {}, 2)
    replies = [await client.post(b"{}", 5.0) for _ in range(2)]
    client.close()
    return replies


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("reply,body", [(CHUNKED, b'{"a": 12}'), (GZIPPED, b'{"a": 2}'),
                                        (DEFLATED, b'{"a": 3}'), (CONTINUE, b'{"a": 4}')],
                         ids=["chunked", "gzip", "deflate", "100-continue"])
def test_reply_forms(reply, body, loop):
    async def handle(reader, writer, state):  # the reply in pieces of 3 bytes
        try:
            while True:
                state["requests"].append(await read_request(reader))
                for i in range(0, len(reply), 3):
                    writer.write(reply[i:i + 3])
                    await writer.drain()
                    await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    replies, state = run(handle, two_posts, loop)
    assert [r.body for r in replies] == [body, body]
    assert state["connections"] == 1
    if reply is CHUNKED:
        assert replies[0].headers["x-twice"] == "a, b"


def test_a_reply_that_ends_with_the_connection():
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\": 5}"

    async def handle(reader, writer, state):
        state["requests"].append(await read_request(reader))
        writer.write(reply)
        await writer.drain()
        writer.close()

    replies, state = run(handle, two_posts)
    assert [r.body for r in replies] == [b'{"a": 5}'] * 2
    assert state["connections"] == 2


def test_connection_close_is_honoured():
    replies, state = run(scripted(ok(extra=b"Connection: close\r\n")), two_posts)
    assert [r.status for r in replies] == [200, 200]
    assert state["connections"] == 2


@pytest.mark.parametrize("loop", LOOPS)
def test_failures_are_told_apart_and_the_client_goes_on(loop):
    cut = ok(b'{"a": 1, "b": 2}')[:-5]

    async def step(url: str, state: dict[str, Any]) -> Any:
        client = http11.Client(url, {}, 2)
        outcomes = []
        for timeout in (5.0, 5.0, 5.0, 0.2, 5.0):
            try:
                outcomes.append((await client.post(b"{}", timeout)).status)
            except Exception as exc:  # noqa: BLE001
                outcomes.append(type(exc).__name__)
        client.close()
        return outcomes

    async def handle(reader, writer, state):
        try:
            while True:
                state["requests"].append(await read_request(reader))
                n = len(state["requests"])
                if n == 1:  # no reply at all
                    break
                if n == 2:  # a body cut short
                    writer.write(cut)
                    break
                if n == 3:
                    writer.write(b"SPDY/9 200 OK\r\n\r\n")
                    break
                if n == 4:  # too slow for the client's timeout
                    await asyncio.sleep(1.0)
                    break
                writer.write(ok())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    outcomes, state = run(handle, step, loop)
    assert outcomes == ["Disconnected", "ProtocolError", "ProtocolError", "TimeoutError", 200]
    assert issubclass(http11.Disconnected, OSError)


def test_refused_connections_raise_oserror():
    async def main() -> None:
        client = http11.Client("http://127.0.0.1:9/v1/chat/completions", {}, 1)
        with pytest.raises(OSError):
            await client.post(b"{}", 5.0)

    asyncio.run(main())


def test_at_most_limit_connections_are_open():
    async def handle(reader, writer, state):
        try:
            while True:
                state["requests"].append(await read_request(reader))
                await asyncio.sleep(0.05)
                writer.write(ok())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def step(url: str, state: dict[str, Any]) -> Any:
        client = http11.Client(url, {}, 2)
        replies = await asyncio.gather(*(client.post(b"{}", 5.0) for _ in range(6)))
        client.close()
        return replies

    replies, state = run(handle, step)
    assert len(replies) == 6 and state["connections"] == 2 and state["most_open"] == 2


def test_https_and_ipv6_urls_are_understood():
    client = http11.Client("https://[::1]/v1/chat/completions?x=1", {}, 1)
    assert (client.host, client.port, client.ssl is not None) == ("::1", 443, True)
    assert client._head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: [::1]\r\n")
    with pytest.raises(ValueError):
        http11.Client("ftp://example.org/", {}, 1)


def test_the_serving_picks_its_transport(monkeypatch):
    url = "http://127.0.0.1:8000/v1/chat/completions"
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert APILLMServing_request(api_url=url, max_workers=16).transport == "openai"
    assert APILLMServing_request(api_url=url, max_workers=64).transport == "asyncio"
    assert APILLMServing_request(api_url=url, max_workers=64,
                                 http_client="aiohttp").transport == "aiohttp"
    remote = "http://llm.example.org/v1/chat/completions"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.org:3128")
    assert APILLMServing_request(api_url=remote, api_key="k",
                                 max_workers=64).transport == "aiohttp"
    with pytest.raises(ServingError, match="proxies"):
        APILLMServing_request(api_url=remote, api_key="k", http_client="asyncio")
