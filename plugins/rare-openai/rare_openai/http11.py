"""A lean HTTP/1.1 client for JSON POSTs: keep-alive connections on asyncio protocols.

At hundreds of requests in flight on a small machine, what a call costs the event loop
decides the throughput, and so does *when* its request goes out. aiohttp (before Python
3.12) writes a request's body from a task of its own, one turn of the loop after the call
made it: when 256 replies arrive together, every slot's next request waits until all 256
replies are parsed, and each wave of calls pays the whole burst's CPU as latency. Here a
request goes out in one ``write`` from the call that makes it, and a reply is parsed in
``data_received``; a call costs about half of aiohttp's CPU.

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

#: the longest status line and headers accepted
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
    """One keep-alive connection: one request at a time, its reply parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.buffer = bytearray()
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.length: int | None = None  # bytes of body still to come (Content-Length)
        self.chunked = False
        self.until_close = False
        self.in_body = False
        self.body = bytearray()
        self.started = False  # any byte of the reply has arrived

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.abort()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.started = True
        self.buffer += data
        try:
            response = self._parse()
        except ProtocolError as exc:
            self._fail(exc)
            return
        if response is not None:
            waiter, self.waiter = self.waiter, None
            if not self.keep_alive or self.buffer:
                self.abort()
            self._reset()
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.waiter is None or self.waiter.done():
            return
        if self.until_close and self.in_body:
            self.waiter.set_result(self._response(self._decoded(bytes(self.body))))
            self.waiter = None
            return
        if self.started:
            self._fail(ProtocolError("the connection closed in the middle of the reply"))
        else:
            detail = f": {exc}" if exc else ""
            self._fail(Disconnected(f"the server closed the connection{detail}"))

    # -- use --------------------------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self.waiter is None
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

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- parsing ----------------------------------------------------------------------------
    def _parse(self) -> Response | None:
        """The reply once it is whole (consumed from the buffer), else None."""
        buffer = self.buffer
        while not self.in_body:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ProtocolError("the reply's headers are too long")
                return None
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[:end + 4]
            self._head(head)
        if self.chunked:
            return self._chunks()
        if self.until_close:
            self.body += buffer
            buffer.clear()
            return None
        assert self.length is not None
        if len(buffer) < self.length:
            return None
        body = bytes(buffer[:self.length])
        del buffer[:self.length]
        return self._response(self._decoded(body))

    def _head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"a malformed header line: {line[:60]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            return  # an interim reply (100 Continue...): the real one follows
        self.status, self.headers, self.in_body = status, headers, True
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection and (
            parts[0] != "HTTP/1.0" or "keep-alive" in connection)
        if status in (204, 304):
            self.length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
        elif "content-length" in headers:
            try:
                self.length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("a malformed Content-Length") from None
            if self.length < 0:
                raise ProtocolError("a negative Content-Length")
        else:
            self.until_close = True
            self.keep_alive = False

    def _chunks(self) -> Response | None:
        buffer = self.buffer
        while True:
            if self.length is None:  # at a chunk's size line
                end = buffer.find(b"\r\n")
                if end < 0:
                    return None
                try:
                    size = int(bytes(buffer[:end]).split(b";")[0].strip(), 16)
                except ValueError:
                    raise ProtocolError("a malformed chunk size") from None
                del buffer[:end + 2]
                if size == 0:
                    self.length = -1  # the trailers come next
                else:
                    self.length = size
            if self.length == -1:
                end = buffer.find(b"\r\n")
                if end < 0:
                    return None
                if end == 0:  # the empty line after the (possibly absent) trailers
                    del buffer[:2]
                    return self._response(self._decoded(bytes(self.body)))
                del buffer[:end + 2]  # a trailer, ignored
                continue
            if len(buffer) < self.length + 2:
                return None
            self.body += buffer[:self.length]
            del buffer[:self.length + 2]
            self.length = None

    def _decoded(self, body: bytes) -> bytes:
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            try:
                if encoding == "deflate":
                    try:
                        return zlib.decompress(body)
                    except zlib.error:
                        return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate
                return zlib.decompress(body, 16 + zlib.MAX_WBITS)
            except zlib.error as exc:
                raise ProtocolError(f"a broken {encoding} body: {exc}") from None
        return body

    def _response(self, body: bytes) -> Response:
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
