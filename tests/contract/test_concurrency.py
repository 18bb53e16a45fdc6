"""Concurrent callers: every atomic operation stays atomic under asyncio.gather."""

from __future__ import annotations

import asyncio
from collections import Counter

from _helpers import TIMEOUT_S, AggregatorFactory, ExecutorFactory, make_task, make_tasks

from ponos_redis import (
    AggregatorStore,
    ClaimedTask,
    ExecutorStore,
    InvalidTransitionError,
    ManualClock,
    StaleLeaseError,
    TaskStatus,
)


async def test_concurrent_claims_take_each_task_once(make_aggregator: AggregatorFactory) -> None:
    replicas: list[AggregatorStore] = [await make_aggregator() for _ in range(4)]
    await replicas[0].save_tasks(make_tasks(100))

    async def worker(n: int) -> list[ClaimedTask]:
        store = replicas[n % len(replicas)]
        mine: list[ClaimedTask] = []
        for _ in range(100):  # bounded: at most 100 rounds
            got = await store.claim_tasks(f"worker-{n}", limit=3, lease_s=60)
            if not got:
                break
            mine.extend(got)
            await asyncio.sleep(0)
        return mine

    async with asyncio.timeout(TIMEOUT_S * 2):
        results = await asyncio.gather(*(worker(n) for n in range(20)))
    claimed = [c for batch in results for c in batch]
    ids = Counter(c.task.task_id for c in claimed)
    assert len(claimed) == 100
    assert set(ids) == {f"task-{i:04d}" for i in range(100)}
    assert max(ids.values()) == 1
    tokens = [c.token for c in claimed]
    assert len(set(tokens)) == 100
    counts = await replicas[0].count_tasks()
    assert counts[TaskStatus.PROCESSING] == 100
    assert counts[TaskStatus.PENDING] == 0
    # each record names the worker that got it
    for n, batch in enumerate(results):
        for c in batch[:2]:
            record = await replicas[0].get_task(c.task.task_id)
            assert record.owner == f"worker-{n}"
            assert record.token == c.token


async def test_concurrent_mark_task_processed_exactly_one_wins(make_executor: ExecutorFactory) -> None:
    stores: list[ExecutorStore] = [await make_executor() for _ in range(3)]
    async with asyncio.timeout(TIMEOUT_S):
        results = await asyncio.gather(*(stores[i % 3].mark_task_processed("dup") for i in range(20)))
    assert results.count(True) == 1
    assert results.count(False) == 19


async def test_concurrent_mark_of_different_ids_all_win(executor: ExecutorStore) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        results = await asyncio.gather(*(executor.mark_task_processed(f"t{i}") for i in range(20)))
    assert all(results)


async def test_concurrent_save_of_one_task_creates_it_once(make_aggregator: AggregatorFactory) -> None:
    stores = [await make_aggregator() for _ in range(2)]
    async with asyncio.timeout(TIMEOUT_S):
        results = await asyncio.gather(*(stores[i % 2].save_task(make_task("t1")) for i in range(10)))
    assert results.count(True) == 1
    assert (await stores[0].count_tasks())[TaskStatus.PENDING] == 1
    assert [t.task_id for t in await stores[1].list_pending_tasks()] == ["t1"]


async def test_concurrent_chain_lease_has_one_winner(make_aggregator: AggregatorFactory) -> None:
    stores = [await make_aggregator() for _ in range(2)]
    async with asyncio.timeout(TIMEOUT_S):
        leases = await asyncio.gather(
            *(stores[i % 2].acquire_chain_lease(1, f"owner-{i}", ttl_s=30) for i in range(10))
        )
    winners = [lease for lease in leases if lease is not None]
    assert len(winners) == 1
    await stores[0].set_last_processed_block(1, 1, fence=winners[0].token)


async def test_concurrent_cursor_moves_end_at_the_highest(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 0)

    async def advance(n: int) -> bool:
        try:
            await aggregator.set_last_processed_block(1, n)
        except InvalidTransitionError:
            return False
        return True

    async with asyncio.timeout(TIMEOUT_S):
        outcomes = await asyncio.gather(*(advance(n) for n in (5, 3, 9, 1, 7, 9, 2)))
    assert outcomes[2] or outcomes[5]
    assert await aggregator.get_last_processed_block(1) == 9


async def test_concurrent_complete_and_reap(make_aggregator: AggregatorFactory, clock: ManualClock) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    await a.save_tasks(make_tasks(20))
    claimed = await a.claim_tasks("w", limit=20, lease_s=5)
    clock.advance(5)

    async def complete(c: ClaimedTask) -> str:
        try:
            await a.complete_task(c.task.task_id, c.token)
        except StaleLeaseError:
            return "stale"
        return "done"

    async with asyncio.timeout(TIMEOUT_S):
        *outcomes, reaped = await asyncio.gather(*(complete(c) for c in claimed), b.reap_expired_leases())
    # each task ends either completed by its holder or reaped, never both
    assert outcomes.count("stale") == reaped
    counts = await a.count_tasks()
    assert counts[TaskStatus.COMPLETED] == outcomes.count("done")
    assert counts[TaskStatus.PENDING] == reaped
    assert counts[TaskStatus.PROCESSING] == 0


async def test_concurrent_saves_and_claims_lose_nothing(make_aggregator: AggregatorFactory) -> None:
    writer = await make_aggregator()
    reader = await make_aggregator()
    got: list[str] = []

    async def produce() -> None:
        for batch in range(5):
            await writer.save_tasks(make_tasks(10, prefix=f"b{batch}"))
            await asyncio.sleep(0)

    async def consume() -> None:
        for _ in range(200):
            claimed = await reader.claim_tasks("r", limit=4, lease_s=60)
            got.extend(c.task.task_id for c in claimed)
            if len(got) >= 50:
                return
            await asyncio.sleep(0)

    async with asyncio.timeout(TIMEOUT_S):
        await asyncio.gather(produce(), consume())
    assert len(got) == 50
    assert len(set(got)) == 50
