"""The runtime collector (per process) and the namespace collector (per namespace)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client import CollectorRegistry, generate_latest

from ponos_redis import AggregatorStore, ClaimedTask, ManualClock, TaskStatus
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.metrics import NamespaceCollector, RuntimeCollector, failure_reason, instrument
from ponos_redis.models import Task
from ponos_redis.runtime import ChainPoller, ExecutorRuntime, FakeChain, Reaper, TaskWorker
from ponos_redis.testing import AVS, make_task


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def chain(step: int) -> FakeChain:
    return FakeChain(1, seed="metrics", avs_address=AVS, tasks_per_block=(1, 1), reorg_every=None, step=step)


async def test_runtime_collector_reads_the_components_counters() -> None:
    registry = CollectorRegistry()
    store = MemoryAggregatorStore("rt-collect")
    leader = ChainPoller(store, chain(9), "r1", max_blocks_per_poll=3)
    follower = ChainPoller(store, chain(9), "r2")

    async def handle(claimed: ClaimedTask) -> None:
        if claimed.task.block_number == 0:
            raise RuntimeError("boom")

    worker = TaskWorker(store, "r1", handle, concurrency=2, poll_interval_s=0.01)
    reaper = Reaper(store, "r1", interval_s=1.0)

    async def perform(task: Task) -> bytes:
        return b"ok"

    executor = ExecutorRuntime(MemoryExecutorStore("rt-exec"), "0x" + "ef" * 20, performer=perform)
    collector = RuntimeCollector(leader, follower, worker, reaper, registry=registry)
    collector.add(executor)

    assert await leader.poll_once() == 3  # blocks 0-2 of 9: three tasks saved
    assert await follower.poll_once() == 0  # r1 holds the lease
    await executor.handle(make_task("e-1"), aggregator_address="0x" + "aa" * 20)
    await reaper.run_once()
    running = asyncio.create_task(worker.run())
    for _ in range(200):  # bounded: a few claim passes
        if worker.completed >= 2 and worker.failed >= 1:
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    await running

    ns = "rt-collect"
    lease = "ponos_poller_lease_held"
    assert value(registry, lease, namespace=ns, chain_id="1", owner="r1") == 1
    assert value(registry, lease, namespace=ns, chain_id="1", owner="r2") == 0
    assert value(registry, "ponos_chain_head_block", namespace=ns, chain_id="1") == 9
    assert value(registry, "ponos_chain_lag_blocks", namespace=ns, chain_id="1") == 9 - 2
    assert value(registry, "ponos_chain_blocks_total", namespace=ns, chain_id="1", owner="r1") == 3
    assert value(registry, "ponos_chain_reorgs_total", namespace=ns, chain_id="1", owner="r1") == 0
    text = generate_latest(registry).decode()
    assert text.count("ponos_chain_lag_blocks{") == 1, "only the lease holder exports the lag"
    tasks = "ponos_worker_tasks_total"
    assert value(registry, tasks, namespace=ns, owner="r1", outcome="completed") == worker.completed == 2
    assert value(registry, tasks, namespace=ns, owner="r1", outcome="failed") == worker.failed >= 1
    assert value(registry, tasks, namespace=ns, owner="r1", outcome="claimed") == worker.claimed
    assert value(registry, "ponos_worker_concurrency", namespace=ns, owner="r1") == 2
    assert value(registry, "ponos_worker_running_tasks", namespace=ns, owner="r1") == 0
    assert value(registry, "ponos_reaper_passes_total", namespace=ns, owner="r1", result="ran") == 1
    operator = "0x" + "ef" * 20
    executed = "ponos_executor_tasks_total"
    assert value(registry, executed, namespace="rt-exec", operator=operator, outcome="executed") == 1
    collector.remove(leader)
    assert value(registry, lease, namespace=ns, chain_id="1", owner="r1") is None
    with pytest.raises(TypeError):
        collector.add(store)  # type: ignore[arg-type]
    collector.unregister()


@pytest.mark.parametrize(
    ("last_error", "reason"),
    [
        (None, "unknown"),
        ("deadline exceeded", "deadline"),
        ("lease expired after 5 of 5 attempts", "lease_expired"),
        ("set to failed by an operator", "operator"),
        ("reorg", "reorg"),
        ("RuntimeError: boom (no retry: 5 of 5 attempts used)", "attempts_exhausted"),
        ("ValueError: bad payload", "handler"),
    ],
)
def test_failure_reasons(last_error: str | None, reason: str) -> None:
    assert failure_reason(last_error) == reason


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def aggregator_store(
    request: pytest.FixtureRequest, namespace: str, clock: ManualClock
) -> AsyncIterator[AggregatorStore]:
    store: Any
    if request.param == "memory":
        store = MemoryAggregatorStore(namespace, clock=clock, max_attempts=1)
    else:
        name = "redis_cluster_store_factory" if request.param == "redis-cluster" else "redis_store_factory"
        factory = request.getfixturevalue(name)
        store = await factory.aggregator(namespace, clock=clock, max_attempts=1)
    yield store
    await store.close()


async def test_namespace_collector_reads_the_namespace_and_follows_its_events(
    aggregator_store: AggregatorStore, clock: ManualClock
) -> None:
    registry = CollectorRegistry()
    store = instrument(aggregator_store, CollectorRegistry())  # wrapped stores are read through
    ns = store.namespace
    await store.save_task(make_task("old-event", chain_id=7))  # before the collector: not counted
    collector = NamespaceCollector(store, registry=registry, task_sla_s=30, required_replicas=2, clock=clock)
    assert await collector.collect_once()
    assert value(registry, "ponos_events_total", namespace=ns, kind="task.saved") is None

    # One task per way of failing, and some that stay pending or complete.
    deadline = clock()
    await store.save_tasks(
        [
            make_task("p-1"),
            make_task("handler"),
            make_task("exhausted"),
            make_task("reaped"),
            make_task("operator"),
            make_task("orphan", chain_id=7, block_number=200),
            make_task("late", deadline=deadline),
            make_task("done"),
        ]
    )
    clock.advance(1)
    claimed = {c.task.task_id: c for c in await store.claim_tasks("r1", limit=10, lease_s=10)}
    assert len(claimed) == 8
    assert "late" not in claimed  # failed by its deadline instead
    await store.release_task("p-1", claimed["p-1"].token)
    await store.fail_task("handler", claimed["handler"].token, "ValueError: bad")
    await store.fail_task("exhausted", claimed["exhausted"].token, "RuntimeError: boom", retry=True)
    await store.update_task_status("operator", TaskStatus.FAILED)
    await store.complete_task("done", claimed["done"].token)
    await store.release_task("old-event", claimed["old-event"].token)
    assert await store.fail_orphaned_tasks(7, 100) == ["orphan"]
    lease = await store.acquire_chain_lease(7, "r1", ttl_s=30)
    assert lease is not None
    await store.set_last_processed_block(7, 150, fence=lease.token)
    clock.advance(11)
    assert await store.reap_expired_leases() == 1  # "reaped", past max_attempts=1: failed
    clock.advance(40)
    assert await collector.collect_once()

    assert value(registry, "ponos_tasks", namespace=ns, status="pending") == 2  # p-1, old-event
    assert value(registry, "ponos_tasks", namespace=ns, status="completed") == 1
    assert value(registry, "ponos_tasks", namespace=ns, status="failed") == 6
    counts = await store.count_tasks()
    for status in TaskStatus:
        assert value(registry, "ponos_tasks", namespace=ns, status=status.value) == counts[status]
    # The oldest pending task (old-event, first in line again after its release) was saved 52 s ago.
    assert value(registry, "ponos_oldest_pending_task_age_seconds", namespace=ns) == pytest.approx(52, abs=1)
    assert value(registry, "ponos_task_sla_seconds", namespace=ns) == 30
    assert value(registry, "ponos_durability_required_replicas", namespace=ns) == 2
    assert value(registry, "ponos_chain_cursor_block", namespace=ns, chain_id="7") == 150
    assert value(registry, "ponos_chain_lease_holders", namespace=ns, chain_id="7") == 0  # lapsed
    assert value(registry, "ponos_set_aside_tasks", namespace=ns) == 0
    length = value(registry, "ponos_events_stream_length", namespace=ns)
    assert length is not None
    assert length >= 10
    assert value(registry, "ponos_events_stream_max_length", namespace=ns) == 100_000
    assert value(registry, "ponos_events_total", namespace=ns, kind="task.saved") == 8
    assert value(registry, "ponos_events_total", namespace=ns, kind="task.reaped") == 1
    failed = {
        reason: value(registry, "ponos_tasks_failed_total", namespace=ns, reason=reason)
        for reason in ("handler", "attempts_exhausted", "lease_expired", "operator", "reorg", "deadline")
    }
    assert failed == dict.fromkeys(failed, 1.0)
    assert value(registry, "ponos_namespace_collect_errors_total", namespace=ns) == 0
    assert value(registry, "ponos_namespace_collect_timestamp_seconds", namespace=ns) is not None

    # A second pass counts only what is new.
    assert await collector.collect_once()
    assert value(registry, "ponos_events_total", namespace=ns, kind="task.saved") == 8
    lease = await store.acquire_chain_lease(7, "r2", ttl_s=60)
    assert await collector.collect_once()
    assert value(registry, "ponos_chain_lease_holders", namespace=ns, chain_id="7") == 1
    collector.unregister()


async def test_a_failed_read_is_counted_and_leaves_no_stale_gauge() -> None:
    registry = CollectorRegistry()
    store = MemoryAggregatorStore("ns-closing")
    collector = NamespaceCollector(store, registry=registry)
    assert await collector.collect_once()
    assert value(registry, "ponos_tasks", namespace="ns-closing", status="pending") == 0
    await store.close()
    assert not await collector.collect_once()
    assert value(registry, "ponos_namespace_collect_errors_total", namespace="ns-closing") == 1
    assert value(registry, "ponos_tasks", namespace="ns-closing", status="pending") is None
    collector.unregister()


async def test_run_reads_every_interval_until_stopped() -> None:
    registry = CollectorRegistry()
    store = MemoryAggregatorStore("ns-run")
    collector = NamespaceCollector(store, registry=registry)
    stop = asyncio.Event()
    running = asyncio.create_task(collector.run(0.01, stop=stop))
    await store.save_task(make_task("t-1"))
    for _ in range(200):
        if value(registry, "ponos_tasks", namespace="ns-run", status="pending") == 1:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert value(registry, "ponos_tasks", namespace="ns-run", status="pending") == 1
    collector.unregister()
