"""The run's Prometheus exporters (``--metrics-port``); imported only when metrics are on.

- :class:`ProcessMetrics`, in each replica and executor: its stores wrapped by
  ``instrument()``, a ``RuntimeCollector`` for its runtime services, served
  on the node's own loopback port (a registry of its own, so in-process nodes
  on the fake do not mix).
- :class:`NamespaceMetrics`, in the coordinator: one ``NamespaceCollector``
  per namespace, all served on one port (their families merged: one
  ``ponos_tasks`` family with a series per namespace and status).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from ..config import RedisSettings
from ..interfaces import AggregatorStore, ExecutorStore
from ..metrics import (
    MergedCollector,
    MetricsServer,
    NamespaceCollector,
    RuntimeCollector,
    instrument,
    start_metrics_server,
)
from ..runtime import ChainPoller, ExecutorRuntime, Reaper, TaskWorker

__all__ = ["NamespaceMetrics", "ProcessMetrics", "required_replicas"]

TASK_SLA_S = 60.0  # exported as ponos_task_sla_seconds, as ``metrics serve`` does by default
COLLECT_INTERVAL_S = 1.0
_FINAL_READ_TIMEOUT_S = 20.0


class ProcessMetrics:
    """One node's process metrics, served on ``port`` once :meth:`start` is called."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.registry = CollectorRegistry()
        self.runtime = RuntimeCollector(registry=self.registry)
        self.server: MetricsServer | None = None

    def aggregator(self, store: AggregatorStore) -> AggregatorStore:
        return instrument(store, self.registry)

    def executor(self, store: ExecutorStore) -> ExecutorStore:
        return instrument(store, self.registry)

    def add(self, *components: TaskWorker | Reaper | ChainPoller | ExecutorRuntime) -> None:
        for component in components:
            self.runtime.add(component)

    def start(self) -> None:
        self.server = start_metrics_server(self.port, self.registry)

    def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()


class NamespaceMetrics:
    """One ``NamespaceCollector`` per namespace, read every second, served on ``port``."""

    def __init__(self, stores: Mapping[str, AggregatorStore], port: int, *, replicas_required: int) -> None:
        self.port = port
        # One registry per collector (a registry takes one of each name), served through one.
        self.collectors = [
            NamespaceCollector(
                store,
                registry=CollectorRegistry(),
                task_sla_s=TASK_SLA_S,
                required_replicas=replicas_required,
            )
            for store in stores.values()
        ]
        self.registry = CollectorRegistry()
        self.registry.register(MergedCollector(self.collectors))
        self.server: MetricsServer | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Listen, then read each namespace every second (the first scrape finds a reading)."""
        self.server = start_metrics_server(self.port, self.registry)
        for collector in self.collectors:
            await collector.collect_once()
        self._tasks = [
            asyncio.create_task(c.run(COLLECT_INTERVAL_S, stop=self._stop), name=f"metrics {c.namespace}")
            for c in self.collectors
        ]

    async def final_reading(self) -> bool:
        """Stop the periodic reads, then read each namespace once more: the reading served
        from then on. True if every namespace was read."""
        self._stop.set()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 30.0)
        ok = True
        for collector in self.collectors:
            try:
                async with asyncio.timeout(_FINAL_READ_TIMEOUT_S):
                    ok = await collector.collect_once() and ok
            except TimeoutError:
                ok = False
        return ok

    def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        server, self.server = self.server, None
        if server is not None:
            server.close()


def required_replicas(redis: RedisSettings | None) -> int:
    """``ponos_durability_required_replicas`` for a store config's ``redis`` block (None: 0)."""
    if redis is None or redis.durability != "replicated":
        return 0
    return redis.replicas
