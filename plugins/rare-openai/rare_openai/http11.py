"""A lean HTTP/1.1 client for JSON POSTs: keep-alive connections on asyncio protocols.

At hundreds of requests in flight on a small machine, what a call costs the event loop
decides the throughput, and so does *when* its request goes out. aiohttp (before Python
3.12) writes a request's body from a task of its own, one turn of the loop after the call
made it: when 256 replies arrive together, every slot's next request waits until all 256
replies are parsed, and each wave of calls pays the whole burst's CPU as latency. Here a
request goes out in one ``write`` from the call that makes it, and a reply is parsed in
``data_received``; a call costs about half of aiohttp's CPU.

The reply is parsed by httptools (llhttp, the parser uvicorn uses); this module keeps only
the connections (the protocol, the pool, timeouts, TLS) and the gzip/deflate decoding.
What it speaks: ``POST`` with a body, ``Content-Length`` or chunked replies (or a body
that ends when the server closes), gzip and deflate bodies, 1xx replies skipped,
keep-alive unless the server says ``close`` or speaks HTTP/1.0; ``http`` and ``https``.
No proxies, redirects or cookies: a serving that needs them uses aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

#: the most bytes accepted before a reply's status line and headers are whole
MAX_HEAD = 65536


class Response(NamedTuple):
    status: int
    #: header names lower-cased; a repeated header's values joined by ", "
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class ProtocolError(Exception):
    """What the server sent is not an HTTP/1.x reply (or its body broke off)."""


class Disconnected(ConnectionError):
    """The server closed the connection before its reply began."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its reply parsed by httptools as
    it arrives (the protocol is the parser's callback object)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.interim = False  # the message being parsed is a 1xx reply
        self._ready()

    def _ready(self) -> None:
        """State for the next request's reply."""
        self.started = False  # any byte of the reply has arrived
        self.head_bytes = 0  # bytes received before the final reply's headers were whole
        self.headers_done = False  # the final (not 1xx) reply's headers are whole
        self.until_close = False  # its body ends when the server closes
        self.keep_alive = True
        self.complete = False  # the final reply is whole
        self.extra = False  # bytes came after it

    # -- httptools' callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True  # a second reply to one request: the connection is spoilt
            return
        self.headers = {}
        self.body = []
        self.interim = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True  # 100 Continue...: the real reply follows
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()
        headers = self.headers
        self.until_close = status not in (204, 304) and "content-length" not in headers \
            and "chunked" not in headers.get("transfer-encoding", "").lower()

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.interim and not self.complete:
            self.complete = True

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.abort()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.started = True
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.complete:
                self._fail(ProtocolError(f"not an HTTP/1.x reply: {exc}"))
                return
            self.extra = True  # garbage after a whole reply
        if not self.complete:
            if not self.headers_done and self.head_bytes > MAX_HEAD:
                self._fail(ProtocolError("the reply's headers are too long"))
            return
        self._finish(close=not self.keep_alive or self.extra)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.waiter is None or self.waiter.done():
            return
        if self.until_close and not self.complete:
            # httptools is not told of the end of the stream: the body is what came
            self._finish(close=False)
            return
        if self.started:
            self._fail(ProtocolError("the connection closed in the middle of the reply"))
        else:
            detail = f": {exc}" if exc else ""
            self._fail(Disconnected(f"the server closed the connection{detail}"))

    # -- use --------------------------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self.waiter is None
        self._ready()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and self.waiter is None \
            and not self.transport.is_closing()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, close: bool) -> None:
        """Hand the whole reply (or why it cannot be decoded) to its waiter; ``close``: the
        connection cannot carry another request."""
        try:
            response = self._response()
        except ProtocolError as exc:
            self._fail(exc)
            return
        waiter, self.waiter = self.waiter, None
        if close:
            self.abort()
        assert waiter is not None
        waiter.set_result(response)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _response(self) -> Response:
        """The final reply, its body decoded."""
        body = b"".join(self.body)
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            try:
                if encoding == "deflate":
                    try:
                        body = zlib.decompress(body)
                    except zlib.error:
                        body = zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate
                else:
                    body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            except zlib.error as exc:
                raise ProtocolError(f"a broken {encoding} body: {exc}") from None
        return Response(self.status, self.headers, body)


class Client:
    """POSTs JSON to one URL over keep-alive connections, at most ``limit`` at a time.

    Made and used on one event loop. ``post`` raises :class:`asyncio.TimeoutError`,
    :class:`OSError` (refused, reset, TLS; :class:`Disconnected` among them) or
    :class:`ProtocolError`.
    """

    def __init__(self, url: str, headers: dict[str, str], limit: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        self.host = parts.hostname
        self.port = parts.port or default_port
        self.ssl: ssl.SSLContext | None = \
            ssl.create_default_context() if parts.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != default_port:
            host = f"{host}:{self.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Accept-Encoding: gzip, deflate",
                 "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.limit = limit
        self._idle: list[_Connection] = []  # kept open, most recently used last
        self._busy: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None  # made on the loop, at first use

    async def post(self, body: bytes, timeout: float) -> Response:
        """Send ``body`` (JSON); the reply within ``timeout`` seconds, waiting for a free
        connection and connecting included."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        if self._slots.locked():  # all ``limit`` connections busy: wait for one
            await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - loop.time()))
        else:
            await self._slots.acquire()  # returns at once
        try:
            conn = await self._connection(deadline)
            self._busy.add(conn)
            try:
                waiter = conn.request(self._head + b"%d\r\n\r\n" % len(body) + body)
                timer = loop.call_at(deadline, _expire, waiter)
                try:
                    response = await waiter
                finally:
                    timer.cancel()
            except BaseException:
                conn.abort()  # a reply cut short, or never read: the connection is done
                raise
            finally:
                self._busy.discard(conn)
            if conn.usable():
                self._idle.append(conn)
            return response
        finally:
            self._slots.release()

    async def _connection(self, deadline: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl),
            max(0.0, deadline - loop.time()))
        return conn

    def close(self) -> None:
        """Close every connection (calls still waiting on one fail)."""
        for conn in [*self._busy, *self._idle]:
            conn.abort()
        self._busy.clear()
        self._idle.clear()


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())
