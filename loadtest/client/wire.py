"""A lean HTTP/1.1 keep-alive client for load generation: an asyncio protocol plus httptools.

Why not httpx for the load itself: on 2 cores the client shares the CPU with the server, and
httpx spends about 1 ms of CPU per request at 8 concurrent requests, so the harness reached 0.45
of wrk's requests/s and measured itself. This client sends the same pre-serialised request bytes
on every request, parses only the status line and framing of the answer (llhttp, through
httptools, the parser uvicorn uses) and keeps connections open: about 40 µs of CPU per request,
close to wrk's ~25 µs. It runs on uvloop when installed (`run`), on asyncio's loop otherwise.

Errors are reported as `RequestError(kind)` with httpx's names (ConnectError, ReadTimeout,
RemoteProtocolError), so result files read the same as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httptools

from loadtest.urls import http_url

T = TypeVar("T")


class RequestError(Exception):
    """One failed request; `kind` names what failed (counted per kind in results)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a fresh uvloop event loop (asyncio's when uvloop is missing)."""
    try:
        # optional: the load client runs on plain asyncio without it
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False
        self.keep_alive = True
        self.got_bytes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail("RemoteProtocolError")
            self.abort()

    def on_message_complete(self) -> None:  # httptools callback
        self.keep_alive = self.parser.should_keep_alive()
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail("RemoteProtocolError")

    def fail(self, kind: str) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(RequestError(kind))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def request_bytes(url: str, body: bytes, content_type: str = "application/json") -> tuple[str, int, bytes]:
    """(host, port, the full POST request) for `url`; serialised once, sent many times."""
    u = urlsplit(http_url(url))
    port = u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {u.hostname}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nUser-Agent: h2h-loadtest\r\n\r\n"
    )
    return u.hostname, port, head.encode("latin-1") + body


class Pool:
    """Keep-alive connections to one URL sending one body; `send()` returns the HTTP status.

    A request reuses an idle connection or opens a new one, so the number of connections
    follows the number of requests in flight (closed loop: the concurrency; open loop: as many
    as the arrivals need).
    """

    def __init__(self, url: str, body: bytes, timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
        self.host, self.port, self.request = request_bytes(url, body)
        self.timeout = timeout
        self.connect_timeout = min(timeout, connect_timeout)
        self.idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Conn, self.host, self.port), self.connect_timeout
            )
        except TimeoutError:
            raise RequestError("ConnectTimeout") from None
        except OSError:
            raise RequestError("ConnectError") from None
        return conn

    async def _checkout(self) -> tuple[_Conn, bool]:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn, True
        return await self._connect(), False

    async def send(self) -> int:
        """One request; retried once on a fresh connection when a reused one was closed under it."""
        conn, reused = await self._checkout()
        try:
            return await self._exchange(conn)
        except RequestError as exc:
            if not (reused and exc.kind == "RemoteProtocolError" and not conn.got_bytes):
                raise
        conn = await self._connect()
        return await self._exchange(conn)

    async def _exchange(self, conn: _Conn) -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        conn.waiter, conn.got_bytes = fut, False
        assert conn.transport is not None
        conn.transport.write(self.request)
        timer = loop.call_later(self.timeout, _expire, conn)
        try:
            status = await fut
        except BaseException:  # error, timeout or cancellation: the connection's state is unknown
            conn.abort()
            raise
        finally:
            timer.cancel()
        if conn.keep_alive and not conn.closed:
            self.idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return status

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


def _expire(conn: _Conn) -> None:
    conn.fail("ReadTimeout")
    conn.abort()
