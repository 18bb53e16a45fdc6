"""JSON lines over loopback TCP: the wire of the simulation's fake services.

It carries the fake operator RPC: an aggregator replica sends a task to each
executor and reads back its signed result (:mod:`._operators`). One request
is one JSON object on one line; so is its reply. A server handles the
requests of one connection in order; a client keeps a few idle connections and
opens another when all are busy, so concurrent callers never wait on each
other, and a connection that failed is dropped, never reused (a restarted
server is reached again on the next call).

Only 127.0.0.1 is ever bound or dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["HOST", "JsonLineClient", "JsonLineError", "JsonLineServer", "serve"]

HOST = "127.0.0.1"
# One line is at most this long (a task's payload is small).
LINE_LIMIT = 4 * 1024 * 1024
_IDLE_CONNECTIONS = 4

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[Message]]


class JsonLineError(Exception):
    """The peer could not be reached, closed the connection, answered late or answered nonsense."""


def _encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes) -> Message:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a message must be a JSON object")
    return value


class JsonLineServer:
    """A running server: its port, and :meth:`close` (stop listening and drop every
    connection, as a process that died would)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, HOST, port, limit=LINE_LIMIT)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                try:
                    reply = await self._handler(_decode(line))
                except Exception as exc:  # reported to the caller, the connection goes on
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(_encode(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            _close(writer)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _close(writer)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()


async def serve(handler: Handler, port: int = 0) -> JsonLineServer:
    """Serve ``handler`` on 127.0.0.1:``port`` (0: a free port, see ``.port``).

    A request that is not a JSON object gets ``{"ok": false, "error": ...}``; an
    exception in ``handler`` does too, so one bad request never takes a server down.
    """
    server = JsonLineServer(handler)
    await server.start(port)
    return server


class JsonLineClient:
    """Requests to one JSON-lines server on 127.0.0.1:``port``.

    Every call is bounded: connecting by ``connect_timeout``, the whole
    exchange by the call's ``within_s``.
    """

    def __init__(self, port: int, *, connect_timeout: float = 1.0) -> None:
        self.port = port
        self._connect_timeout = connect_timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._closed = False

    async def call(self, request: Message, *, within_s: float) -> Message:
        """Send ``request`` and return the reply.

        Raises:
            JsonLineError: no connection, no reply within ``within_s``, or a reply that is not JSON.
        """
        if self._closed:
            raise JsonLineError("client closed")
        conn = self._idle.pop() if self._idle else None
        try:
            async with asyncio.timeout(within_s):
                if conn is None:
                    async with asyncio.timeout(self._connect_timeout):
                        conn = await asyncio.open_connection(HOST, self.port, limit=LINE_LIMIT)
                reader, writer = conn
                writer.write(_encode(request))
                await writer.drain()
                line = await reader.readline()
            if not line:
                raise ConnectionError("connection closed by the peer")
            reply = _decode(line)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            if conn is not None:
                _close(conn[1])
            raise JsonLineError(f"127.0.0.1:{self.port}: {type(exc).__name__}: {exc}") from None
        except BaseException:  # cancelled mid-exchange: the connection's state is unknown
            if conn is not None:
                _close(conn[1])
            raise
        if len(self._idle) < _IDLE_CONNECTIONS and not self._closed:
            self._idle.append(conn)
        else:
            _close(conn[1])
        return reply

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            _close(writer)
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
