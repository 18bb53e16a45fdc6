"""The store wrapper: both store interfaces, around any store, with a latency
histogram and an error counter per operation, and the few counters that only a
caller of the store sees (stale completions, leases reaped, WAIT shortfalls).

One wrapper for every backend, so the memory fake, Redis and a store of your
own are measured the same way. Nothing here is imported or paid for unless
``instrument()`` is called.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar, overload

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from .._connection import RETRY_OBSERVERS
from ..errors import DurabilityError, StaleLeaseError, StoreUnavailableError
from ..interfaces import AggregatorStore, ExecutorStore
from ..models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    ClaimedTask,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    StoreEvent,
    Task,
    TaskRecord,
    TaskStatus,
)
from ._backend import backend_name
from ._catalog import spec

__all__ = ["InstrumentedAggregatorStore", "InstrumentedExecutorStore", "StoreMetrics", "instrument"]

T = TypeVar("T")

# Store operations take from well under a millisecond to the whole retry budget (15 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    metric = spec(name)
    return Counter(metric.base, metric.help, metric.labels, registry=registry)


class StoreMetrics:
    """The store and retry metrics of one registry (made once per registry: see :meth:`of`)."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, StoreMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        duration = spec("ponos_store_operation_duration_seconds")
        self.duration = Histogram(
            duration.base, duration.help, duration.labels, registry=registry, buckets=LATENCY_BUCKETS
        )
        self.errors = _counter("ponos_store_operation_errors_total", registry)
        self.unavailable = _counter("ponos_store_unavailable_total", registry)
        self.shortfalls = _counter("ponos_durability_shortfalls_total", registry)
        self.stale_completions = _counter("ponos_stale_completions_total", registry)
        self.leases_reaped = _counter("ponos_leases_reaped_total", registry)
        self.transient = _counter("ponos_redis_transient_errors_total", registry)
        self.retries = _counter("ponos_redis_retries_total", registry)
        self.ridden_through = _counter("ponos_redis_ridden_through_total", registry)
        self._observing = False

    @classmethod
    def of(cls, registry: CollectorRegistry | None = None) -> StoreMetrics:
        """The metrics of ``registry`` (default: prometheus-client's global one), made on first use."""
        registry = REGISTRY if registry is None else registry
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls(registry)
        return metrics

    def observe_retries(self) -> None:
        """Count the Redis retry policy's events (once per registry; process-wide)."""
        if not self._observing:
            self._observing = True
            RETRY_OBSERVERS.append(self._on_retry)

    def stop_observing_retries(self) -> None:
        """Undo :meth:`observe_retries` (tests, or a registry being dropped)."""
        if self._observing:
            self._observing = False
            with contextlib.suppress(ValueError):
                RETRY_OBSERVERS.remove(self._on_retry)

    def _on_retry(self, outcome: str, what: str, error: str) -> None:
        operation = what.partition("(")[0]
        if outcome == "ridden_through":
            self.ridden_through.labels(operation).inc()
            return
        self.transient.labels(operation, error).inc()
        if outcome == "retried":
            self.retries.labels(operation, error).inc()


class _Bound:
    """The metrics of one store (backend, namespace), with the label children cached."""

    def __init__(self, metrics: StoreMetrics, backend: str, namespace: str) -> None:
        self.metrics = metrics
        self.backend = backend
        self.namespace = namespace
        self._durations: dict[str, Any] = {}
        self.stale_completions = metrics.stale_completions.labels(backend, namespace)
        self.leases_reaped = metrics.leases_reaped.labels(backend, namespace)

    def observe(self, operation: str, seconds: float) -> None:
        child = self._durations.get(operation)
        if child is None:
            child = self._durations[operation] = self.metrics.duration.labels(
                operation, self.backend, self.namespace
            )
        child.observe(seconds)

    def error(self, operation: str, exc: Exception) -> None:
        m, labels = self.metrics, (operation, self.backend, self.namespace)
        m.errors.labels(*labels, type(exc).__name__).inc()
        if isinstance(exc, StoreUnavailableError):
            m.unavailable.labels(*labels).inc()
        elif isinstance(exc, DurabilityError):
            m.shortfalls.labels(*labels).inc()


class _Instrumented:
    """What both wrappers share: timing, error counting, lifecycle, pass-through."""

    def __init__(self, inner: Any, bound: _Bound) -> None:
        self.inner = inner
        self.namespace: str = inner.namespace
        self._m = bound

    async def _run(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        except Exception as exc:
            self._m.error(operation, exc)
            raise
        finally:
            self._m.observe(operation, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        # What is not part of the interface (keys, epoch, server_facts ...) is the inner store's.
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._run("close", self.inner.close())


class InstrumentedAggregatorStore(_Instrumented):
    """An :class:`~ponos_redis.AggregatorStore` that measures every call of the store it wraps."""

    inner: AggregatorStore

    async def get_last_processed_block(self, chain_id: int) -> int:
        return await self._run("get_last_processed_block", self.inner.get_last_processed_block(chain_id))

    async def set_last_processed_block(
        self, chain_id: int, block_number: int, *, fence: int | None = None
    ) -> None:
        await self._run(
            "set_last_processed_block",
            self.inner.set_last_processed_block(chain_id, block_number, fence=fence),
        )

    async def rewind_chain(self, chain_id: int, block_number: int, *, fence: int | None = None) -> None:
        await self._run("rewind_chain", self.inner.rewind_chain(chain_id, block_number, fence=fence))

    async def save_block(self, record: BlockRecord) -> None:
        await self._run("save_block", self.inner.save_block(record))

    async def get_block(self, chain_id: int, number: int) -> BlockRecord:
        return await self._run("get_block", self.inner.get_block(chain_id, number))

    async def delete_block(self, chain_id: int, number: int) -> None:
        await self._run("delete_block", self.inner.delete_block(chain_id, number))

    async def acquire_chain_lease(self, chain_id: int, owner: str, *, ttl_s: float) -> ChainLease | None:
        return await self._run(
            "acquire_chain_lease", self.inner.acquire_chain_lease(chain_id, owner, ttl_s=ttl_s)
        )

    async def renew_chain_lease(self, lease: ChainLease, *, ttl_s: float) -> ChainLease:
        return await self._run("renew_chain_lease", self.inner.renew_chain_lease(lease, ttl_s=ttl_s))

    async def release_chain_lease(self, lease: ChainLease) -> None:
        await self._run("release_chain_lease", self.inner.release_chain_lease(lease))

    async def save_task(self, task: Task) -> bool:
        return await self._run("save_task", self.inner.save_task(task))

    async def save_tasks(self, tasks: Iterable[Task]) -> int:
        return await self._run("save_tasks", self.inner.save_tasks(tasks))

    async def get_task(self, task_id: str) -> TaskRecord:
        return await self._run("get_task", self.inner.get_task(task_id))

    async def list_pending_tasks(
        self, avs_address: str | None = None, *, limit: int | None = None
    ) -> list[Task]:
        return await self._run("list_pending_tasks", self.inner.list_pending_tasks(avs_address, limit=limit))

    async def count_tasks(self) -> dict[TaskStatus, int]:
        return await self._run("count_tasks", self.inner.count_tasks())

    async def update_task_status(self, task_id: str, status: TaskStatus) -> None:
        await self._run("update_task_status", self.inner.update_task_status(task_id, status))

    async def delete_task(self, task_id: str) -> None:
        await self._run("delete_task", self.inner.delete_task(task_id))

    async def claim_tasks(self, owner: str, *, limit: int, lease_s: float) -> list[ClaimedTask]:
        return await self._run("claim_tasks", self.inner.claim_tasks(owner, limit=limit, lease_s=lease_s))

    async def renew_task_lease(self, task_id: str, token: int, *, lease_s: float) -> None:
        await self._run("renew_task_lease", self.inner.renew_task_lease(task_id, token, lease_s=lease_s))

    async def complete_task(self, task_id: str, token: int) -> None:
        try:
            await self._run("complete_task", self.inner.complete_task(task_id, token))
        except StaleLeaseError:
            self._m.stale_completions.inc()
            raise

    async def fail_task(self, task_id: str, token: int, reason: str, *, retry: bool = False) -> None:
        await self._run("fail_task", self.inner.fail_task(task_id, token, reason, retry=retry))

    async def release_task(self, task_id: str, token: int) -> None:
        await self._run("release_task", self.inner.release_task(task_id, token))

    async def reap_expired_leases(self) -> int:
        reaped = await self._run("reap_expired_leases", self.inner.reap_expired_leases())
        if reaped:
            self._m.leases_reaped.inc(reaped)
        return reaped

    async def trim_finished_tasks(self, *, limit: int = 1000) -> int:
        return await self._run("trim_finished_tasks", self.inner.trim_finished_tasks(limit=limit))

    async def fail_orphaned_tasks(
        self,
        chain_id: int,
        above_block: int,
        *,
        keep: Collection[str] = (),
        reason: str = "reorg",
        fence: int | None = None,
    ) -> list[str]:
        return await self._run(
            "fail_orphaned_tasks",
            self.inner.fail_orphaned_tasks(chain_id, above_block, keep=keep, reason=reason, fence=fence),
        )

    async def try_runner_lease(self, name: str, owner: str, *, ttl_s: float) -> bool:
        return await self._run("try_runner_lease", self.inner.try_runner_lease(name, owner, ttl_s=ttl_s))

    async def save_operator_set_config(
        self, avs_address: str, operator_set_id: int, config: OperatorSetTaskConfig
    ) -> None:
        await self._run(
            "save_operator_set_config",
            self.inner.save_operator_set_config(avs_address, operator_set_id, config),
        )

    async def get_operator_set_config(self, avs_address: str, operator_set_id: int) -> OperatorSetTaskConfig:
        return await self._run(
            "get_operator_set_config", self.inner.get_operator_set_config(avs_address, operator_set_id)
        )

    async def save_avs_config(self, avs_address: str, config: AvsConfig) -> None:
        await self._run("save_avs_config", self.inner.save_avs_config(avs_address, config))

    async def get_avs_config(self, avs_address: str) -> AvsConfig:
        return await self._run("get_avs_config", self.inner.get_avs_config(avs_address))

    async def events(
        self, *, after: str | None = None, block_s: float | None = None
    ) -> AsyncIterator[StoreEvent]:
        """The inner store's events; an error that ends the iteration is counted under ``events``."""
        source = self.inner.events(after=after, block_s=block_s)
        try:
            async for event in source:
                yield event
        except Exception as exc:
            self._m.error("events", exc)
            raise
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()


class InstrumentedExecutorStore(_Instrumented):
    """An :class:`~ponos_redis.ExecutorStore` that measures every call of the store it wraps."""

    inner: ExecutorStore

    async def save_performer_state(self, state: PerformerState) -> None:
        await self._run("save_performer_state", self.inner.save_performer_state(state))

    async def get_performer_state(self, performer_id: str) -> PerformerState:
        return await self._run("get_performer_state", self.inner.get_performer_state(performer_id))

    async def list_performer_states(self) -> list[PerformerState]:
        return await self._run("list_performer_states", self.inner.list_performer_states())

    async def delete_performer_state(self, performer_id: str) -> None:
        await self._run("delete_performer_state", self.inner.delete_performer_state(performer_id))

    async def save_inflight_task(self, task: InflightTask) -> None:
        await self._run("save_inflight_task", self.inner.save_inflight_task(task))

    async def get_inflight_task(self, task_id: str) -> InflightTask:
        return await self._run("get_inflight_task", self.inner.get_inflight_task(task_id))

    async def list_inflight_tasks(self) -> list[InflightTask]:
        return await self._run("list_inflight_tasks", self.inner.list_inflight_tasks())

    async def delete_inflight_task(self, task_id: str) -> None:
        await self._run("delete_inflight_task", self.inner.delete_inflight_task(task_id))

    async def save_deployment(self, deployment: Deployment) -> None:
        await self._run("save_deployment", self.inner.save_deployment(deployment))

    async def get_deployment(self, deployment_id: str) -> Deployment:
        return await self._run("get_deployment", self.inner.get_deployment(deployment_id))

    async def update_deployment_status(
        self, deployment_id: str, status: DeploymentStatus, *, error: str = ""
    ) -> None:
        await self._run(
            "update_deployment_status",
            self.inner.update_deployment_status(deployment_id, status, error=error),
        )

    async def list_deployment_history(self, deployment_id: str) -> list[DeploymentEvent]:
        return await self._run("list_deployment_history", self.inner.list_deployment_history(deployment_id))

    async def mark_task_processed(self, task_id: str) -> bool:
        return await self._run("mark_task_processed", self.inner.mark_task_processed(task_id))

    async def is_task_processed(self, task_id: str) -> bool:
        return await self._run("is_task_processed", self.inner.is_task_processed(task_id))


@overload
def instrument(
    store: AggregatorStore,
    registry: CollectorRegistry | None = None,
    *,
    backend: str | None = None,
    enabled: bool = True,
) -> AggregatorStore: ...
@overload
def instrument(
    store: ExecutorStore,
    registry: CollectorRegistry | None = None,
    *,
    backend: str | None = None,
    enabled: bool = True,
) -> ExecutorStore: ...
def instrument(
    store: AggregatorStore | ExecutorStore,
    registry: CollectorRegistry | None = None,
    *,
    backend: str | None = None,
    enabled: bool = True,
) -> AggregatorStore | ExecutorStore:
    """Wrap a store so that every call is measured; the result implements the same interface.

    The wrapper times each operation (``ponos_store_operation_duration_seconds``),
    counts its errors by type, and counts stale completions, leases reaped,
    ``StoreUnavailableError`` and ``DurabilityError``. For a Redis store it also
    registers the retry policy's observer (``ponos_redis_*``; process-wide, once
    per registry). Use the wrapper in place of the store: ``async with`` and
    ``close()`` close the inner store; what is not part of the interface
    (``keys``, ``epoch`` ...) is passed through.

    Args:
        store: an aggregator or executor store of any backend. An already
            instrumented store is returned as it is.
        registry: where the metrics go; default prometheus-client's global ``REGISTRY``.
        backend: the ``backend`` label; default ``redis``, ``memory`` or the class name.
        enabled: False returns ``store`` itself, unwrapped (nothing is measured).

    Returns:
        the wrapped store (``InstrumentedAggregatorStore`` or ``InstrumentedExecutorStore``).

    Raises:
        TypeError: ``store`` implements neither interface.
    """
    if not enabled or isinstance(store, _Instrumented):
        return store
    wrapper: type[InstrumentedAggregatorStore | InstrumentedExecutorStore]
    if isinstance(store, AggregatorStore):
        wrapper = InstrumentedAggregatorStore
    elif isinstance(store, ExecutorStore):
        wrapper = InstrumentedExecutorStore
    else:
        raise TypeError(
            f"instrument() needs an AggregatorStore or an ExecutorStore, not {type(store).__name__}"
        )
    name = backend or backend_name(store)
    metrics = StoreMetrics.of(registry)
    if name == "redis":
        metrics.observe_retries()
    return wrapper(store, _Bound(metrics, name, store.namespace))
