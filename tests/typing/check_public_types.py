"""Checked by ``mypy --strict`` in the test command (not collected by pytest): the
public API's types are what users code against, and a missing ``await`` is an error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import assert_type

from ponos_redis import (
    AggregatorStore,
    ChainLease,
    ClaimedTask,
    ExecutorStore,
    MemoryAggregatorStore,
    MemoryExecutorStore,
    RedisAggregatorStore,
    RedisExecutorStore,
    StorageConfig,
    StoreEvent,
    Task,
    TaskRecord,
    TaskStatus,
    open_aggregator_store,
    open_executor_store,
)
from ponos_redis.backends import redis as redis_backend


async def aggregator_types(task: Task) -> None:
    store = await open_aggregator_store("memory")
    assert_type(store, AggregatorStore)
    async with open_aggregator_store(StorageConfig(), namespace="n") as opened:
        assert_type(opened, AggregatorStore)
    assert_type(await store.save_task(task), bool)
    assert_type(await store.save_tasks([task]), int)
    assert_type(await store.get_task("t"), TaskRecord)
    assert_type(await store.list_pending_tasks(limit=3), list[Task])
    assert_type(await store.count_tasks(), dict[TaskStatus, int])
    assert_type(await store.claim_tasks("o", limit=1, lease_s=1.0), list[ClaimedTask])
    assert_type(await store.acquire_chain_lease(1, "o", ttl_s=1.0), ChainLease | None)
    assert_type(await store.get_last_processed_block(1), int)
    assert_type(await store.reap_expired_leases(), int)
    assert_type(await store.fail_orphaned_tasks(1, 5, keep={"t"}, fence=None), list[str])
    assert_type(await store.try_runner_lease("reaper", "o", ttl_s=1.0), bool)
    assert_type(store.events(block_s=0.1), AsyncIterator[StoreEvent])
    async for event in store.events():
        assert_type(event, StoreEvent)


async def executor_types() -> None:
    store = await open_executor_store("memory")
    assert_type(store, ExecutorStore)
    assert_type(await store.mark_task_processed("t"), bool)


def backends_implement_the_interfaces() -> None:
    aggregators: list[type[AggregatorStore]] = [MemoryAggregatorStore, RedisAggregatorStore]
    executors: list[type[ExecutorStore]] = [MemoryExecutorStore, RedisExecutorStore]
    assert aggregators
    assert executors


def redis_stores_are_exported_from_the_package() -> None:
    assert_type(RedisAggregatorStore, type[redis_backend.RedisAggregatorStore])
    assert_type(RedisExecutorStore, type[redis_backend.RedisExecutorStore])
