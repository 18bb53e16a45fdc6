"""Prometheus metrics for ponos-redis: ``pip install 'ponos-redis[metrics]'``.

Nothing in ponos-redis imports this package by itself: without it (or without
calling anything here) the stores are not wrapped and pay nothing.

- :func:`instrument` wraps any store (memory, Redis, yours) in one wrapper that
  implements the same interface and measures each operation: latency, errors by
  type, stale completions, leases reaped, ``StoreUnavailableError`` and WAIT
  shortfalls; for Redis also the retry policy's transient errors and retries.
- :class:`RuntimeCollector` exports the counters of the runtime's components
  (workers, reapers, pollers, executors), read at scrape time.
- :class:`NamespaceCollector` reads one namespace's state (tasks by status,
  oldest pending age, event stream, chain cursors and lease holders) and follows
  its event stream; ``ponos-redis metrics serve`` runs one per namespace, so N
  replicas do not report N copies.
- :func:`start_metrics_server` serves a registry at ``/metrics`` on 127.0.0.1.

Every constructor takes ``registry=`` (default: prometheus-client's global
``REGISTRY``). :data:`CATALOG` lists every metric with its type, labels and
scope (per process or per namespace); docs/observability.md explains them.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> store = instrument(await open_aggregator_store(url), registry)  # doctest: +SKIP
>>> RuntimeCollector(worker, reaper, poller, registry=registry)  # doctest: +SKIP
>>> server = start_metrics_server(9188, registry)  # doctest: +SKIP
"""

try:
    import prometheus_client as _prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ponos_redis.metrics needs prometheus-client: pip install 'ponos-redis[metrics]'"
    ) from exc

from ._catalog import CATALOG, MetricSpec
from ._namespace import MergedCollector, NamespaceCollector, failure_reason
from ._runtime import RuntimeCollector
from ._server import MetricsServer, start_metrics_server
from ._store import InstrumentedAggregatorStore, InstrumentedExecutorStore, StoreMetrics, instrument

__all__ = [
    "CATALOG",
    "InstrumentedAggregatorStore",
    "InstrumentedExecutorStore",
    "MergedCollector",
    "MetricSpec",
    "MetricsServer",
    "NamespaceCollector",
    "RuntimeCollector",
    "StoreMetrics",
    "failure_reason",
    "instrument",
    "start_metrics_server",
]
