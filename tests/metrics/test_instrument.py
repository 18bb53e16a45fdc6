"""The store wrapper: both interfaces, every operation measured, the counters only a
caller sees, the Redis retry hook, and nothing paid when metrics are not asked for."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import exceptions as rexc

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client import CollectorRegistry

from ponos_redis import (
    AggregatorStore,
    DurabilityError,
    ExecutorStore,
    ManualClock,
    NotFoundError,
    StaleLeaseError,
    StoreUnavailableError,
)
from ponos_redis._connection import RETRY_OBSERVERS, retrying
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.config import RetrySettings
from ponos_redis.interfaces import AggregatorStore as AggregatorProtocol
from ponos_redis.metrics import (
    InstrumentedAggregatorStore,
    InstrumentedExecutorStore,
    StoreMetrics,
    instrument,
)
from ponos_redis.testing import make_performer, make_task


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def _members(protocol: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(protocol).items()
        if callable(member) and (not name.startswith("_") or name in ("__aenter__", "__aexit__"))
    }


@pytest.mark.parametrize(
    ("protocol", "wrapper"),
    [(AggregatorStore, InstrumentedAggregatorStore), (ExecutorStore, InstrumentedExecutorStore)],
)
def test_the_wrapper_defines_every_method_of_the_interface_with_its_signature(
    protocol: type, wrapper: type
) -> None:
    for name, signature in _members(protocol).items():
        assert hasattr(wrapper, name), f"{wrapper.__name__} lacks {name}"
        own = inspect.signature(getattr(wrapper, name))
        assert list(own.parameters) == list(signature.parameters), name
        for param, expected in signature.parameters.items():
            assert own.parameters[param].kind == expected.kind, (name, param)
            assert own.parameters[param].default == expected.default, (name, param)


async def test_every_operation_is_timed_and_errors_counted_by_type() -> None:
    registry = CollectorRegistry()
    store = instrument(MemoryAggregatorStore("m-ops"), registry)
    assert isinstance(store, InstrumentedAggregatorStore)
    assert isinstance(store, AggregatorProtocol)
    await store.save_task(make_task("t-1"))
    await store.get_task("t-1")
    with pytest.raises(NotFoundError):
        await store.get_task("missing")
    labels = {"backend": "memory", "namespace": "m-ops"}
    assert (
        value(registry, "ponos_store_operation_duration_seconds_count", operation="save_task", **labels) == 1
    )
    assert (
        value(registry, "ponos_store_operation_duration_seconds_count", operation="get_task", **labels) == 2
    )
    assert value(registry, "ponos_store_operation_duration_seconds_sum", operation="get_task", **labels) > 0
    assert (
        value(
            registry,
            "ponos_store_operation_errors_total",
            operation="get_task",
            error_type="NotFoundError",
            **labels,
        )
        == 1
    )
    await store.close()


async def test_stale_completions_and_reaped_leases_are_counted() -> None:
    clock = ManualClock()
    registry = CollectorRegistry()
    store = instrument(MemoryAggregatorStore("m-stale", clock=clock), registry)
    await store.save_task(make_task("t-1"))
    [claimed] = await store.claim_tasks("r1", limit=1, lease_s=10)
    clock.advance(11)
    assert await store.reap_expired_leases() == 1
    with pytest.raises(StaleLeaseError):
        await store.complete_task("t-1", claimed.token)
    labels = {"backend": "memory", "namespace": "m-stale"}
    assert value(registry, "ponos_leases_reaped_total", **labels) == 1
    assert value(registry, "ponos_stale_completions_total", **labels) == 1
    await store.close()


class _Failing(MemoryAggregatorStore):
    """A store whose complete_task raises what it is told to."""

    error: Exception = StoreUnavailableError("gone")

    async def complete_task(self, task_id: str, token: int) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "counter"),
    [
        (StoreUnavailableError("redis gone"), "ponos_store_unavailable_total"),
        (DurabilityError("0 of 1 replicas acknowledged"), "ponos_durability_shortfalls_total"),
    ],
)
async def test_unavailable_and_durability_errors_have_their_own_counters(
    error: Exception, counter: str
) -> None:
    registry = CollectorRegistry()
    inner = _Failing("m-fail")
    inner.error = error
    store = instrument(inner, registry, backend="redis")
    with pytest.raises(type(error)):
        await store.complete_task("t-1", 1)
    labels = {"operation": "complete_task", "backend": "redis", "namespace": "m-fail"}
    assert value(registry, counter, **labels) == 1
    assert (
        value(registry, "ponos_store_operation_errors_total", error_type=type(error).__name__, **labels) == 1
    )
    StoreMetrics.of(registry).stop_observing_retries()


async def test_the_executor_store_is_wrapped_too_and_extras_pass_through() -> None:
    registry = CollectorRegistry()
    inner = MemoryExecutorStore("m-exec")
    store = instrument(inner, registry)
    assert isinstance(store, InstrumentedExecutorStore)
    async with store:
        await store.save_performer_state(make_performer("p-1"))
        assert [p.performer_id for p in await store.list_performer_states()] == ["p-1"]
        assert store.inner is inner
        assert store._settings is inner._settings  # not part of the interface: passed through
    labels = {"backend": "memory", "namespace": "m-exec"}
    assert value(registry, "ponos_store_operation_duration_seconds_count", operation="close", **labels) == 1
    count = "ponos_store_operation_duration_seconds_count"
    assert value(registry, count, operation="save_performer_state", **labels) == 1


async def test_events_pass_through_and_each_registry_is_its_own() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    inner = MemoryAggregatorStore("m-events")
    one, two = instrument(inner, first), instrument(inner, second)
    await one.save_task(make_task("t-1"))
    seen = [event.kind async for event in two.events()]
    assert seen == ["task.saved"]
    labels = {"operation": "save_task", "backend": "memory", "namespace": "m-events"}
    assert value(first, "ponos_store_operation_duration_seconds_count", **labels) == 1
    assert value(second, "ponos_store_operation_duration_seconds_count", **labels) == 0


def test_disabled_or_already_instrumented_means_no_second_wrapper() -> None:
    registry = CollectorRegistry()
    inner = MemoryAggregatorStore("m-off")
    assert instrument(inner, registry, enabled=False) is inner
    wrapped = instrument(inner, registry)
    assert instrument(wrapped, registry) is wrapped
    with pytest.raises(TypeError):
        instrument(object(), registry)  # type: ignore[call-overload]


class _Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise rexc.ConnectionError("connection refused")
        return "ok"


async def test_the_retry_hook_counts_retries_transient_errors_and_ridden_through() -> None:
    registry = CollectorRegistry()
    metrics = StoreMetrics.of(registry)
    metrics.observe_retries()
    try:
        policy = RetrySettings(attempts=3, max_backoff_ms=10, total_s=5)
        assert await retrying(policy, _Flaky(2), "claim") == "ok"
        with pytest.raises(StoreUnavailableError):
            await retrying(policy, _Flaky(10), "complete(t-1)")
    finally:
        metrics.stop_observing_retries()
    assert _on_retry_removed(metrics)
    error = {"error_type": "ConnectionError"}
    assert value(registry, "ponos_redis_retries_total", operation="claim", **error) == 2
    assert value(registry, "ponos_redis_transient_errors_total", operation="claim", **error) == 2
    assert value(registry, "ponos_redis_ridden_through_total", operation="claim") == 1
    # Gave up: two retries, then the third error ends the budget (a transient error, not retried).
    assert value(registry, "ponos_redis_retries_total", operation="complete", **error) == 2
    assert value(registry, "ponos_redis_transient_errors_total", operation="complete", **error) == 3
    assert value(registry, "ponos_redis_ridden_through_total", operation="complete") == 0


def _on_retry_removed(metrics: StoreMetrics) -> bool:
    return all(getattr(observer, "__self__", None) is not metrics for observer in RETRY_OBSERVERS)


async def test_a_failing_observer_never_fails_the_call() -> None:
    def broken(outcome: str, what: str, error: str) -> None:
        raise RuntimeError("observer bug")

    RETRY_OBSERVERS.append(broken)
    try:
        policy = RetrySettings(attempts=3, max_backoff_ms=10, total_s=5)
        assert await retrying(policy, _Flaky(1), "op") == "ok"
    finally:
        RETRY_OBSERVERS.remove(broken)


def test_without_metrics_nothing_is_imported_or_observed() -> None:
    code = (
        "import asyncio, sys\n"
        "import ponos_redis, ponos_redis.runtime, ponos_redis.logs\n"
        "from ponos_redis import open_aggregator_store\n"
        "from ponos_redis._connection import RETRY_OBSERVERS\n"
        "async def main():\n"
        "    async with open_aggregator_store('memory') as store:\n"
        "        await store.count_tasks()\n"
        "        return type(store).__name__\n"
        "name = asyncio.run(main())\n"
        "print(name, 'prometheus_client' in sys.modules, 'ponos_redis.metrics' in sys.modules,"
        " len(RETRY_OBSERVERS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["MemoryAggregatorStore", "False", "False", "0"]


@pytest.fixture
async def redis_store(redis_url: str, redis_namespace: str) -> AsyncIterator[Any]:
    from ponos_redis.backends.redis import RedisAggregatorStore

    store = await RedisAggregatorStore.open(redis_url, namespace=redis_namespace)
    yield store
    await store.close()


@pytest.mark.redis_only
async def test_a_redis_store_is_labelled_redis_and_observes_retries(redis_store: Any) -> None:
    registry = CollectorRegistry()
    store = instrument(redis_store, registry)
    try:
        await store.save_task(make_task("t-1"))
        labels = {"operation": "save_task", "backend": "redis", "namespace": redis_store.namespace}
        assert value(registry, "ponos_store_operation_duration_seconds_count", **labels) == 1
        assert store.keys is redis_store.keys
        assert any(getattr(o, "__self__", None) is StoreMetrics.of(registry) for o in RETRY_OBSERVERS)
    finally:
        StoreMetrics.of(registry).stop_observing_retries()
