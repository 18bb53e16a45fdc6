"""Where a run's metrics are served (``--metrics-port``), and the wait after the run.

Nothing here imports prometheus-client: the exporters themselves are in
:mod:`._exporters`, imported only by a run (or a node) that serves metrics.

Ports: the coordinator serves the namespaces on ``P`` (one
``NamespaceCollector`` per namespace, so N replicas do not report N copies of
the namespace gauges); replica ``i`` serves its process metrics on ``P + i``
and executor ``j`` on ``P + replicas + j``, all on 127.0.0.1, a restarted node
on the same port as before. With ``P = 0`` the coordinator picks free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._redis_server import HOST, find_free_port
from ..errors import InvalidInputError
from ._options import SimulationOptions

__all__ = ["MetricsPorts", "linger", "plan_metrics_ports"]

_FREE_PORT_ATTEMPTS = 100


@dataclass(frozen=True)
class MetricsPorts:
    """The run's metrics endpoints: the namespaces' port, and each node's by name."""

    namespaces: int
    replicas: dict[str, int]
    executors: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Prometheus scrape targets (``host:port``), as the report shows them."""
        return {
            "namespaces": f"{HOST}:{self.namespaces}",
            "replicas": {name: f"{HOST}:{port}" for name, port in self.replicas.items()},
            "executors": {name: f"{HOST}:{port}" for name, port in self.executors.items()},
        }

    def lines(self) -> list[str]:
        """One line per endpoint, for the start of a run."""
        url = "http://" + HOST + ":{}/metrics"
        lines = [f"metrics: {url.format(self.namespaces)}  namespaces (the coordinator)"]
        for name, port in [*self.replicas.items(), *self.executors.items()]:
            lines.append(f"metrics: {url.format(port)}  {name}")
        return lines


def _in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def plan_metrics_ports(options: SimulationOptions) -> MetricsPorts | None:
    """The ports of a run, None without ``metrics_port``.

    Raises:
        InvalidInputError: one of the ports ``P`` .. ``P + replicas + executors`` is in use,
            or prometheus-client is not installed.
    """
    base = options.metrics_port
    if base is None:
        return None
    if importlib.util.find_spec("prometheus_client") is None:
        raise InvalidInputError("--metrics-port needs prometheus-client: pip install 'ponos-redis[metrics]'")
    count = 1 + options.replicas + options.executors
    if base == 0:
        picked: list[int] = []
        for _ in range(_FREE_PORT_ATTEMPTS):
            port = find_free_port()
            if port not in picked:
                picked.append(port)
            if len(picked) == count:
                break
        else:
            raise InvalidInputError(f"could not find {count} free ports on {HOST} for the metrics")
    else:
        picked = list(range(base, base + count))
        busy = [port for port in picked if _in_use(port)]
        if busy:
            raise InvalidInputError(
                f"--metrics-port {base}: the run serves metrics on ports {base}-{base + count - 1} "
                f"of {HOST} and {', '.join(map(str, busy))} is in use; choose another port, or 0 "
                "for any free ports"
            )
    first, replicas, executors = picked[0], picked[1 : 1 + options.replicas], picked[1 + options.replicas :]
    return MetricsPorts(
        namespaces=first,
        replicas={f"replica-{i + 1}": port for i, port in enumerate(replicas)},
        executors={f"executor-{j + 1}": port for j, port in enumerate(executors)},
    )


async def linger(seconds: float, announce: Callable[[], None]) -> None:
    """Wait ``seconds``, or less if SIGINT or SIGTERM arrives (in the main thread); call
    ``announce`` once the signals are caught, just before the wait."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    caught: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, done.set)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not Unix
                continue
            caught.append((sig, previous))
    try:
        announce()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
    finally:
        for sig, previous in caught:
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
