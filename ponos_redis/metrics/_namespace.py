"""Namespace metrics: what the store holds, read from ONE place per namespace.

Task counts, the oldest pending task's age, the event stream's length and cap,
chain cursors and lease holders describe the shared namespace, not a process:
if every replica exported them, N replicas would report N copies. They come
from a :class:`NamespaceCollector`, which ``ponos-redis metrics serve`` runs
(once per namespace), reading the store every few seconds; a scrape returns
the last reading.

It also follows the namespace's event stream from the moment it starts and
counts the events by kind and the tasks that became failed by reason. Those
counters see every replica's transitions exactly once, whoever made them;
events trimmed from the capped stream before a pass read them are not
counted (a pass every 5 s and the default cap of 100,000 leave room for
20,000 transitions a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..backends._common import DEADLINE_EXCEEDED
from ..errors import NotFoundError
from ..interfaces import AggregatorStore
from ..models import TaskStatus
from ._backend import BackendFacts, backend_facts
from ._catalog import CATALOG, MetricSpec

__all__ = ["NamespaceCollector", "failure_reason"]

_log = logging.getLogger("ponos_redis.metrics")

_NAMES = tuple(metric.name for metric in CATALOG if metric.scope == "namespace")
_OPERATOR_FAILED = "set to failed by an operator"  # update_task_status(..., FAILED)
_REAP_FAILED = "lease expired after "  # a reap after max_attempts
_RETRY_EXHAUSTED = "(no retry: "  # fail_task(retry=True) after max_attempts


def failure_reason(last_error: str | None) -> str:
    """The ``reason`` label of a failed task, from its ``last_error``.

    ``deadline`` (claimed after its deadline), ``lease_expired`` (reaped after
    max_attempts), ``attempts_exhausted`` (the handler failed it with retry on its
    last attempt), ``operator`` (update_task_status), ``reorg`` (orphaned by a
    reorg), ``handler`` (failed without retry), ``unknown`` (record gone).
    """
    if not last_error:
        return "unknown"
    if last_error.startswith(DEADLINE_EXCEEDED):
        return "deadline"
    if last_error.startswith(_REAP_FAILED):
        return "lease_expired"
    if last_error == _OPERATOR_FAILED:
        return "operator"
    if last_error == "reorg":
        return "reorg"
    if _RETRY_EXHAUSTED in last_error:
        return "attempts_exhausted"
    return "handler"


@dataclass(frozen=True)
class _Reading:
    counts: dict[TaskStatus, int]
    oldest_pending_age_s: float
    facts: BackendFacts
    cursors: dict[int, int]
    at: float
    took_s: float


def _family(metric: MetricSpec) -> Metric:
    if metric.kind == "counter":
        return CounterMetricFamily(metric.base, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)


class NamespaceCollector(Collector):
    """Reads one namespace's state for Prometheus; run exactly one per namespace.

    Args:
        store: the namespace's aggregator store (any backend; wrapped or not).
        registry: where to register; default prometheus-client's global ``REGISTRY``.
        task_sla_s: exported as ``ponos_task_sla_seconds`` for the SLA alert; None: not exported.
        required_replicas: exported as ``ponos_durability_required_replicas``; None: not exported.
        chain_ids: the chains to report; None: every chain the namespace has.
        clock: "now" for the oldest pending age; default the system clock.
        max_events: most events one pass reads from the stream (the next pass goes on).
        max_lookups: most failed tasks one pass reads to learn their reason (the rest: ``unknown``).
    """

    def __init__(
        self,
        store: AggregatorStore,
        *,
        registry: CollectorRegistry | None = None,
        task_sla_s: float | None = None,
        required_replicas: int | None = None,
        chain_ids: Collection[int] | None = None,
        clock: Callable[[], datetime] | None = None,
        max_events: int = 10_000,
        max_lookups: int = 1_000,
    ) -> None:
        if max_events < 1 or max_lookups < 0:
            raise ValueError("max_events must be positive and max_lookups not negative")
        self.store = store
        self.namespace = store.namespace
        self.task_sla_s = task_sla_s
        self.required_replicas = required_replicas
        self.chain_ids = None if chain_ids is None else sorted(set(chain_ids))
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_events = max_events
        self.max_lookups = max_lookups
        self._lock = threading.Lock()
        self._reading: _Reading | None = None
        self._last_success: float | None = None
        self._events: Tally[str] = Tally()
        self._failed: Tally[str] = Tally()
        self._errors = 0
        self._following = False
        self._position: str | None = None
        self.registry = REGISTRY if registry is None else registry
        self.registry.register(self)

    def unregister(self) -> None:
        """Take the collector out of its registry."""
        self.registry.unregister(self)

    # -- reading the store ------------------------------------------------------------

    async def collect_once(self) -> bool:
        """Read the namespace once; the next scrape shows this reading.

        A failed read is counted (``ponos_namespace_collect_errors_total``), logged,
        and leaves no gauge behind (they reappear with the next good reading).

        Returns:
            True if the namespace was read.
        """
        started = time.monotonic()
        try:
            facts = await backend_facts(self.store, self.chain_ids)
            counts = await self.store.count_tasks()
            oldest = await self._oldest_pending_age()
            cursors: dict[int, int] = {}
            for chain_id in facts.chains:
                with contextlib.suppress(NotFoundError):
                    cursors[chain_id] = await self.store.get_last_processed_block(chain_id)
            await self._follow(facts)
        except Exception as exc:
            with self._lock:
                self._errors += 1
                self._reading = None
            _log.warning(
                "metrics: could not read namespace %s: %s: %s",
                self.namespace,
                type(exc).__name__,
                exc,
                extra={"event": "metrics_read_failed", "namespace": self.namespace},
            )
            return False
        now = time.time()
        reading = _Reading(counts, oldest, facts, cursors, now, time.monotonic() - started)
        with self._lock:
            self._reading = reading
            self._last_success = now
        return True

    async def run(self, interval_s: float = 5.0, *, stop: asyncio.Event | None = None) -> None:
        """Read the namespace every ``interval_s`` until ``stop`` is set or the task is cancelled."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            await self.collect_once()
            left = started + interval_s - loop.time()
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), left)

    async def _oldest_pending_age(self) -> float:
        # Pending tasks are in first-in first-out order: the first is the oldest.
        for _ in range(3):  # it may be claimed between the two reads: look again
            first = await self.store.list_pending_tasks(limit=1)
            if not first:
                return 0.0
            try:
                record = await self.store.get_task(first[0].task_id)
            except NotFoundError:
                continue
            if record.status is TaskStatus.PENDING:
                return max(0.0, (self.clock() - record.created_at).total_seconds())
        return 0.0

    async def _follow(self, facts: BackendFacts) -> None:
        """Count the events appended since the last pass (from the stream's end at the first)."""
        if not self._following:
            self._following = True
            if facts.events_length is not None:
                self._position = facts.last_event_id
                return
            # A backend that cannot say where the stream ends: skip what is there, uncounted.
            self._position = await self._skip_to_end()
            return
        kinds: Tally[str] = Tally()
        reasons: Tally[str] = Tally()
        failed: list[str] = []
        source = self.store.events(after=self._position)
        try:
            async for event in source:
                self._position = event.id
                kinds[event.kind] += 1
                if event.kind == "task.failed":
                    failed.append(event.subject)
                elif event.kind == "task.reaped" and event.status == TaskStatus.FAILED.value:
                    reasons["lease_expired"] += 1
                if sum(kinds.values()) >= self.max_events:
                    break
        finally:
            await _aclose(source)
        for looked, task_id in enumerate(failed):
            reasons[await self._reason(task_id) if looked < self.max_lookups else "unknown"] += 1
        with self._lock:
            self._events.update(kinds)
            self._failed.update(reasons)

    async def _skip_to_end(self) -> str | None:
        position = None
        source = self.store.events()
        try:
            async for event in source:
                position = event.id
        finally:
            await _aclose(source)
        return position

    async def _reason(self, task_id: str) -> str:
        try:
            record = await self.store.get_task(task_id)
        except NotFoundError:
            return "unknown"
        return failure_reason(record.last_error) if record.status is TaskStatus.FAILED else "unknown"

    # -- exposition -----------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return [_family(metric) for metric in CATALOG if metric.name in _NAMES]

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Any] = {
            metric.name: _family(metric) for metric in CATALOG if metric.name in _NAMES
        }
        ns = self.namespace
        with self._lock:
            reading, last = self._reading, self._last_success
            events, failed, errors = dict(self._events), dict(self._failed), self._errors
        for kind, n in sorted(events.items()):
            families["ponos_events_total"].add_metric([ns, kind], n)
        for reason, n in sorted(failed.items()):
            families["ponos_tasks_failed_total"].add_metric([ns, reason], n)
        families["ponos_namespace_collect_errors_total"].add_metric([ns], errors)
        if last is not None:
            families["ponos_namespace_collect_timestamp_seconds"].add_metric([ns], last)
        if self.task_sla_s is not None:
            families["ponos_task_sla_seconds"].add_metric([ns], self.task_sla_s)
        if self.required_replicas is not None:
            families["ponos_durability_required_replicas"].add_metric([ns], self.required_replicas)
        if reading is not None:
            self._gauges(families, reading)
        yield from families.values()

    def _gauges(self, families: dict[str, Any], reading: _Reading) -> None:
        ns, facts = self.namespace, reading.facts
        for status in TaskStatus:
            families["ponos_tasks"].add_metric([ns, status.value], reading.counts.get(status, 0))
        families["ponos_oldest_pending_task_age_seconds"].add_metric([ns], reading.oldest_pending_age_s)
        families["ponos_namespace_collect_duration_seconds"].add_metric([ns], reading.took_s)
        if facts.events_length is not None:
            families["ponos_events_stream_length"].add_metric([ns], facts.events_length)
        if facts.events_max_length is not None:
            families["ponos_events_stream_max_length"].add_metric([ns], facts.events_max_length)
        if facts.set_aside is not None:
            families["ponos_set_aside_tasks"].add_metric([ns], facts.set_aside)
        for chain_id, cursor in sorted(reading.cursors.items()):
            families["ponos_chain_cursor_block"].add_metric([ns, str(chain_id)], cursor)
        for chain_id, held in sorted(facts.chains.items()):
            if held is not None:
                families["ponos_chain_lease_holders"].add_metric([ns, str(chain_id)], 1 if held else 0)


async def _aclose(source: object) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


class MergedCollector(Collector):
    """Several namespaces' collectors served as one: one family per metric name.

    A registry takes each metric name once, and the text format allows one block
    per name, so namespaces served on one port need their families merged: give
    each :class:`NamespaceCollector` a registry of its own and register this one
    where the server reads.

    Args:
        collectors: the namespaces' collectors (each read with its own ``run``).
    """

    def __init__(self, collectors: Sequence[NamespaceCollector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for collector in self.collectors:
            for family in collector.collect():  # fresh families at each scrape
                known = merged.setdefault(family.name, family)
                if known is not family:
                    known.samples.extend(family.samples)
        yield from merged.values()
