"""Process metrics of the runtime's components, read from the counters they keep.

The components (TaskWorker, Reaper, ChainPoller, ExecutorRuntime) already
count what they do; this collector reads those counters when Prometheus
scrapes, so the runtime imports nothing and pays nothing for metrics. Reading
an int another thread writes is safe in CPython; a scrape sees each counter as
it was at some instant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..runtime import ChainPoller, ExecutorRuntime, Reaper, TaskWorker
from ._catalog import CATALOG, MetricSpec

__all__ = ["Component", "RuntimeCollector"]

Component = TaskWorker | Reaper | ChainPoller | ExecutorRuntime

_NAMES = (
    "ponos_worker_tasks_total",
    "ponos_worker_running_tasks",
    "ponos_worker_concurrency",
    "ponos_worker_lease_renewals_total",
    "ponos_reaper_passes_total",
    "ponos_chain_blocks_total",
    "ponos_chain_reorgs_total",
    "ponos_chain_orphaned_tasks_total",
    "ponos_poller_lease_held",
    "ponos_chain_head_block",
    "ponos_chain_lag_blocks",
    "ponos_runtime_store_retries_total",
    "ponos_runtime_errors_total",
    "ponos_executor_tasks_total",
)
_WORKER_OUTCOMES = ("claimed", "completed", "failed", "stale", "released", "abandoned")
_EXECUTOR_OUTCOMES = ("executed", "deduplicated", "reexecuted", "failed", "ambiguous")


def _family(metric: MetricSpec) -> Metric:
    if metric.kind == "counter":
        return CounterMetricFamily(metric.base, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)


class RuntimeCollector(Collector):
    """Exports the counters of runtime components (per process).

    >>> collector = RuntimeCollector(worker, reaper, poller)  # doctest: +SKIP
    >>> start_metrics_server(9188)  # doctest: +SKIP

    Args:
        components: TaskWorker, Reaper, ChainPoller or ExecutorRuntime objects.
        registry: where to register; default prometheus-client's global ``REGISTRY``.
    """

    def __init__(self, *components: Component, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._components: list[Component] = []
        for component in components:
            self.add(component)
        self.registry = REGISTRY if registry is None else registry
        self.registry.register(self)

    def add(self, component: Component) -> None:
        """Report ``component`` too."""
        if not isinstance(component, TaskWorker | Reaper | ChainPoller | ExecutorRuntime):
            raise TypeError(f"not a runtime component: {type(component).__name__}")
        with self._lock:
            self._components.append(component)

    def remove(self, component: Component) -> None:
        """Stop reporting ``component`` (its series disappear)."""
        with self._lock:
            self._components.remove(component)

    def unregister(self) -> None:
        """Take the collector out of its registry."""
        self.registry.unregister(self)

    def describe(self) -> Iterable[Metric]:
        return [_family(metric) for metric in CATALOG if metric.name in _NAMES]

    def collect(self) -> Iterator[Metric]:
        families = {metric.name: _family(metric) for metric in CATALOG if metric.name in _NAMES}
        with self._lock:
            components = list(self._components)
        for component in components:
            namespace = str(getattr(component.store, "namespace", ""))
            if isinstance(component, TaskWorker):
                self._worker(families, namespace, component)
            elif isinstance(component, Reaper):
                self._reaper(families, namespace, component)
            elif isinstance(component, ChainPoller):
                self._poller(families, namespace, component)
            else:
                self._executor(families, namespace, component)
        yield from families.values()

    @staticmethod
    def _add(families: dict[str, Metric], name: str, labels: list[str], value: float) -> None:
        family: Any = families[name]
        family.add_metric(labels, value)

    def _service(self, families: dict[str, Metric], namespace: str, component: Any) -> None:
        labels = [namespace, component.component, component.owner]
        self._add(families, "ponos_runtime_store_retries_total", labels, component.store_retries)
        self._add(families, "ponos_runtime_errors_total", labels, component.errors)

    def _worker(self, families: dict[str, Metric], namespace: str, worker: TaskWorker) -> None:
        for outcome in _WORKER_OUTCOMES:
            value = getattr(worker, outcome)
            self._add(families, "ponos_worker_tasks_total", [namespace, worker.owner, outcome], value)
        self._add(families, "ponos_worker_running_tasks", [namespace, worker.owner], worker.running)
        self._add(families, "ponos_worker_concurrency", [namespace, worker.owner], worker.concurrency)
        self._add(families, "ponos_worker_lease_renewals_total", [namespace, worker.owner], worker.renewals)
        self._service(families, namespace, worker)

    def _reaper(self, families: dict[str, Metric], namespace: str, reaper: Reaper) -> None:
        for result, value in (("ran", reaper.runs), ("skipped", reaper.skipped)):
            self._add(families, "ponos_reaper_passes_total", [namespace, reaper.owner, result], value)
        self._service(families, namespace, reaper)

    def _poller(self, families: dict[str, Metric], namespace: str, poller: ChainPoller) -> None:
        chain = str(poller.chain_id)
        labels = [namespace, chain, poller.owner]
        self._add(families, "ponos_chain_blocks_total", labels, poller.blocks)
        self._add(families, "ponos_chain_reorgs_total", labels, poller.reorgs)
        self._add(families, "ponos_chain_orphaned_tasks_total", labels, poller.orphaned_failed)
        held = poller.lease is not None
        self._add(families, "ponos_poller_lease_held", labels, 1 if held else 0)
        # Only the holder knows the head and the cursor as they are now: one series per chain.
        if held and poller.head is not None:
            self._add(families, "ponos_chain_head_block", [namespace, chain], poller.head)
            if poller.cursor is not None:
                lag = max(0, poller.head - poller.cursor)
                self._add(families, "ponos_chain_lag_blocks", [namespace, chain], lag)
        self._service(families, namespace, poller)

    def _executor(self, families: dict[str, Metric], namespace: str, executor: ExecutorRuntime) -> None:
        for outcome in _EXECUTOR_OUTCOMES:
            value = getattr(executor, outcome)
            labels = [namespace, executor.operator_address, outcome]
            self._add(families, "ponos_executor_tasks_total", labels, value)
