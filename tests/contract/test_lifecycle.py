"""Store lifecycle: close, async with, replicas and namespaces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _helpers import (
    AVS_A,
    START,
    AggregatorFactory,
    ExecutorFactory,
    collect_events,
    make_deployment,
    make_inflight,
    make_performer,
    make_task,
)

from ponos_redis import (
    AggregatorStore,
    AvsConfig,
    BlockRecord,
    ChainLease,
    CurveType,
    DeploymentStatus,
    ExecutorStore,
    OperatorSetTaskConfig,
    StoreClosedError,
    TaskStatus,
)

LEASE = ChainLease(chain_id=1, owner="poller", token=1, expires_at=START)
BLOCK = BlockRecord(chain_id=1, number=1, hash="0x1", parent_hash="0x0", timestamp=1)

AGGREGATOR_CALLS: dict[str, Callable[[Any], Awaitable[object]]] = {
    "get_last_processed_block": lambda s: s.get_last_processed_block(1),
    "set_last_processed_block": lambda s: s.set_last_processed_block(1, 5),
    "set_last_processed_block_fenced": lambda s: s.set_last_processed_block(1, 5, fence=1),
    "rewind_chain": lambda s: s.rewind_chain(1, 0),
    "save_block": lambda s: s.save_block(BLOCK),
    "get_block": lambda s: s.get_block(1, 1),
    "delete_block": lambda s: s.delete_block(1, 1),
    "acquire_chain_lease": lambda s: s.acquire_chain_lease(1, "poller", ttl_s=5),
    "renew_chain_lease": lambda s: s.renew_chain_lease(LEASE, ttl_s=5),
    "release_chain_lease": lambda s: s.release_chain_lease(LEASE),
    "save_task": lambda s: s.save_task(make_task("t1")),
    "save_tasks": lambda s: s.save_tasks([make_task("t1")]),
    "get_task": lambda s: s.get_task("t1"),
    "list_pending_tasks": lambda s: s.list_pending_tasks(),
    "list_pending_tasks_avs": lambda s: s.list_pending_tasks(AVS_A, limit=1),
    "count_tasks": lambda s: s.count_tasks(),
    "update_task_status": lambda s: s.update_task_status("t1", TaskStatus.FAILED),
    "delete_task": lambda s: s.delete_task("t1"),
    "claim_tasks": lambda s: s.claim_tasks("w", limit=1, lease_s=5),
    "renew_task_lease": lambda s: s.renew_task_lease("t1", 1, lease_s=5),
    "complete_task": lambda s: s.complete_task("t1", 1),
    "fail_task": lambda s: s.fail_task("t1", 1, "x"),
    "fail_task_retry": lambda s: s.fail_task("t1", 1, "x", retry=True),
    "release_task": lambda s: s.release_task("t1", 1),
    "reap_expired_leases": lambda s: s.reap_expired_leases(),
    "trim_finished_tasks": lambda s: s.trim_finished_tasks(),
    "fail_orphaned_tasks": lambda s: s.fail_orphaned_tasks(1, 0, keep=["t1"]),
    "try_runner_lease": lambda s: s.try_runner_lease("reaper", "r1", ttl_s=5),
    "save_operator_set_config": lambda s: s.save_operator_set_config(
        AVS_A, 1, OperatorSetTaskConfig(task_sla_s=1, curve_type=CurveType.ECDSA)
    ),
    "get_operator_set_config": lambda s: s.get_operator_set_config(AVS_A, 1),
    "save_avs_config": lambda s: s.save_avs_config(
        AVS_A,
        AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[1], curve_type=CurveType.ECDSA),
    ),
    "get_avs_config": lambda s: s.get_avs_config(AVS_A),
}

EXECUTOR_CALLS: dict[str, Callable[[Any], Awaitable[object]]] = {
    "save_performer_state": lambda s: s.save_performer_state(make_performer("p1")),
    "get_performer_state": lambda s: s.get_performer_state("p1"),
    "list_performer_states": lambda s: s.list_performer_states(),
    "delete_performer_state": lambda s: s.delete_performer_state("p1"),
    "save_inflight_task": lambda s: s.save_inflight_task(make_inflight("i1")),
    "get_inflight_task": lambda s: s.get_inflight_task("i1"),
    "list_inflight_tasks": lambda s: s.list_inflight_tasks(),
    "delete_inflight_task": lambda s: s.delete_inflight_task("i1"),
    "save_deployment": lambda s: s.save_deployment(make_deployment("d1")),
    "get_deployment": lambda s: s.get_deployment("d1"),
    "update_deployment_status": lambda s: s.update_deployment_status("d1", DeploymentStatus.DEPLOYING),
    "list_deployment_history": lambda s: s.list_deployment_history("d1"),
    "mark_task_processed": lambda s: s.mark_task_processed("t1"),
    "is_task_processed": lambda s: s.is_task_processed("t1"),
}


async def populate_aggregator(store: AggregatorStore) -> None:
    """Make every call above one that would succeed on an open store."""
    await store.save_task(make_task("t1"))
    await store.set_last_processed_block(1, 1)
    await store.save_block(BLOCK)


async def populate_executor(store: ExecutorStore) -> None:
    await store.save_performer_state(make_performer("p1"))
    await store.save_inflight_task(make_inflight("i1"))
    await store.save_deployment(make_deployment("d1"))


def test_stores_implement_the_interfaces(aggregator: AggregatorStore, executor: ExecutorStore) -> None:
    assert isinstance(aggregator, AggregatorStore)
    assert isinstance(executor, ExecutorStore)


@pytest.mark.parametrize("call", list(AGGREGATOR_CALLS.values()), ids=list(AGGREGATOR_CALLS))
async def test_aggregator_call_after_close_raises(
    make_aggregator: AggregatorFactory, call: Callable[[Any], Awaitable[object]]
) -> None:
    store = await make_aggregator()
    await populate_aggregator(store)
    await store.close()
    with pytest.raises(StoreClosedError):
        await call(store)
    # the data is still there for a new store of the namespace
    fresh = await make_aggregator()
    assert (await fresh.get_task("t1")).task == make_task("t1")


async def test_aggregator_events_after_close_raise(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator()
    await store.save_task(make_task("t1"))
    await store.close()
    with pytest.raises(StoreClosedError):
        async for _ in store.events():
            pass
    with pytest.raises(StoreClosedError):
        async for _ in store.events(block_s=0.05):
            pass


@pytest.mark.parametrize("call", list(EXECUTOR_CALLS.values()), ids=list(EXECUTOR_CALLS))
async def test_executor_call_after_close_raises(
    make_executor: ExecutorFactory, call: Callable[[Any], Awaitable[object]]
) -> None:
    store = await make_executor()
    await populate_executor(store)
    await store.close()
    with pytest.raises(StoreClosedError):
        await call(store)
    fresh = await make_executor()
    assert (await fresh.get_performer_state("p1")).performer_id == "p1"


async def test_close_is_idempotent(
    make_aggregator: AggregatorFactory, make_executor: ExecutorFactory
) -> None:
    agg = await make_aggregator()
    exe = await make_executor()
    for _ in range(3):
        await agg.close()
        await exe.close()
    with pytest.raises(StoreClosedError):
        await agg.count_tasks()
    with pytest.raises(StoreClosedError):
        await exe.list_performer_states()


async def test_async_with_closes_the_aggregator(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator()
    async with store as entered:
        assert entered is store
        await entered.save_task(make_task("t1"))
    with pytest.raises(StoreClosedError):
        await store.get_task("t1")
    await store.close()  # still idempotent after the context closed it


async def test_async_with_closes_the_executor(make_executor: ExecutorFactory) -> None:
    store = await make_executor()
    async with store as entered:
        assert entered is store
        assert await entered.mark_task_processed("t1") is True
    with pytest.raises(StoreClosedError):
        await store.is_task_processed("t1")


async def test_async_with_closes_on_error(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator()
    with pytest.raises(RuntimeError, match="inside"):
        async with store:
            raise RuntimeError("inside")
    with pytest.raises(StoreClosedError):
        await store.count_tasks()


async def test_closing_one_replica_leaves_the_other_open(make_aggregator: AggregatorFactory) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    await a.save_task(make_task("t1"))
    await a.close()
    assert (await b.get_task("t1")).status == TaskStatus.PENDING
    await b.save_task(make_task("t2"))
    assert [t.task_id for t in await b.list_pending_tasks()] == ["t1", "t2"]


async def test_replicas_share_state(make_aggregator: AggregatorFactory) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    await a.save_task(make_task("t1"))
    assert await b.save_task(make_task("t1")) is False
    [claimed] = await b.claim_tasks("replica-b", limit=5, lease_s=30)
    assert await a.claim_tasks("replica-a", limit=5, lease_s=30) == []
    await a.complete_task("t1", claimed.token)
    assert (await b.get_task("t1")).status == TaskStatus.COMPLETED


async def test_namespaces_are_isolated(
    make_aggregator: AggregatorFactory, make_executor: ExecutorFactory, namespace: str
) -> None:
    a = await make_aggregator()
    other = await make_aggregator(namespace=f"{namespace}-other")
    await a.save_task(make_task("t1"))
    await a.set_last_processed_block(1, 10)
    assert await other.list_pending_tasks() == []
    assert sum((await other.count_tasks()).values()) == 0
    assert await other.save_task(make_task("t1", payload=b"different")) is True
    assert (await a.get_task("t1")).task.payload == make_task("t1").payload
    assert await other.acquire_chain_lease(1, "x", ttl_s=5) is not None
    assert await a.acquire_chain_lease(1, "y", ttl_s=5) is not None
    other_kinds = [e.kind for e in await collect_events(other)]
    assert other_kinds.count("task.saved") == 1
    assert "chain.advanced" not in other_kinds
    assert "chain.advanced" in [e.kind for e in await collect_events(a)]

    e = await make_executor()
    e_other = await make_executor(namespace=f"{namespace}-other")
    await e.save_performer_state(make_performer("p1"))
    assert await e_other.list_performer_states() == []
    assert await e.mark_task_processed("t1") is True
    assert await e_other.mark_task_processed("t1") is True


async def test_state_outlives_the_store(
    make_aggregator: AggregatorFactory, make_executor: ExecutorFactory
) -> None:
    a = await make_aggregator()
    await a.save_task(make_task("t1"))
    await a.set_last_processed_block(5, 50)
    await a.close()
    b = await make_aggregator()
    assert (await b.get_task("t1")).task == make_task("t1")
    assert await b.get_last_processed_block(5) == 50

    e = await make_executor()
    await e.mark_task_processed("t1")
    await e.close()
    e2 = await make_executor()
    assert await e2.is_task_processed("t1") is True


async def test_every_tuning_keyword_is_accepted(
    make_aggregator: AggregatorFactory, make_executor: ExecutorFactory
) -> None:
    agg = await make_aggregator(
        default_lease_s=12,
        max_attempts=2,
        retention_s=60,
        max_payload_bytes=1024,
        events_maxlen=50,
        block_window=100,
    )
    await agg.save_task(make_task("t1"))
    await agg.update_task_status("t1", TaskStatus.PROCESSING)
    record = await agg.get_task("t1")
    assert record.lease_until is not None
    assert (record.lease_until - record.updated_at).total_seconds() == 12
    exe = await make_executor(processed_ttl_s=60, history_maxlen=10)
    await exe.save_deployment(make_deployment("d1"))
    assert len(await exe.list_deployment_history("d1")) == 1
