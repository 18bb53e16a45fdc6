"""Serving ``/metrics`` over HTTP, on loopback unless told otherwise."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

__all__ = ["MetricsServer", "start_metrics_server"]

DEFAULT_ADDR = "127.0.0.1"


class MetricsServer:
    """A running ``/metrics`` endpoint (a thread); :meth:`close` stops it.

    Attributes:
        host, port: where it listens (``port`` is the real one when 0 was asked).
    """

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (waits up to 5 s for the thread)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_metrics_server(
    port: int = 0, registry: CollectorRegistry | None = None, *, addr: str = DEFAULT_ADDR
) -> MetricsServer:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a background thread.

    Args:
        port: the TCP port; 0 picks a free one (read it from the result's ``port``).
        registry: what to serve; default prometheus-client's global ``REGISTRY``.
        addr: the address to listen on; loopback by default. Listening on another
            address exposes the metrics to whoever reaches it: choose deliberately.

    Returns:
        the running server; ``close()`` it (or use it as a context manager).
    """
    server, thread = start_http_server(port, addr=addr, registry=REGISTRY if registry is None else registry)
    return MetricsServer(server, thread)
