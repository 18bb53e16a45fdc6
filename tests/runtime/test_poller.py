"""ChainPoller on the fake store and FakeChain: blocks, tasks, reorgs, the chain lease."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _runtime_support import FlakyStore, run_virtual, wait_until

from ponos_redis import (
    ManualClock,
    MemoryAggregatorStore,
    NotFoundError,
    StaleLeaseError,
    TaskStatus,
)
from ponos_redis.runtime import ChainBlock, ChainPoller, FakeChain, TaskWorker
from ponos_redis.testing import AVS

CHAIN = 17000


def fake_chain(**kwargs: Any) -> FakeChain:
    settings: dict[str, Any] = {
        "seed": 11,
        "avs_address": AVS,
        "tasks_per_block": (2, 3),
        "reorg_every": (4, 7),
        "max_reorg_depth": 3,
    }
    settings.update(kwargs)
    return FakeChain(CHAIN, **settings)


async def status_of(store: Any, task_id: str) -> TaskStatus | None:
    try:
        return (await store.get_task(task_id)).status
    except NotFoundError:
        return None


def test_poller_saves_blocks_and_tasks_and_advances(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain(reorg_every=None, step=12)
        poller = ChainPoller(store, chain, "p1", confirmations=2)
        assert await poller.poll_once() == 11  # blocks 0 .. 10
        assert await store.get_last_processed_block(CHAIN) == 10
        for number in (0, 5, 10):
            expected = chain.block_at(number, 12)
            assert expected is not None
            assert await store.get_block(CHAIN, number) == expected.record()
        canonical = chain.canonical_tasks(up_to_block=10)
        assert poller.tasks_saved == len(canonical) > 0
        for task in canonical:
            assert (await store.get_task(task.task_id)).task == task
        assert await poller.poll_once() == 0  # nothing new: nothing written again
        assert (poller.blocks, poller.reorgs) == (11, 0)
        assert poller.lease is not None
        assert poller.lease.owner == "p1"
        await poller.release()
        assert await store.acquire_chain_lease(CHAIN, "other", ttl_s=5) is not None

    run_virtual(main)


def test_reorgs_fail_orphaned_tasks_and_keep_the_carried_ones(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain()
        poller = ChainPoller(store, chain, "p1")
        seen: set[str] = set()
        last = 60
        for step in range(last + 1):
            chain.set_step(step)
            await poller.poll_once()
            seen.update(t.task_id for t in chain.canonical_tasks())
            clock.advance(1)
        reorgs = chain.reorgs()
        assert poller.reorgs == len(reorgs) >= 5
        assert await store.get_last_processed_block(CHAIN) == last
        orphaned = chain.orphaned_task_ids()
        canonical = {t.task_id for t in chain.canonical_tasks()}
        carried = canonical & {
            t.task_id
            for r in reorgs
            for n in range(r.fork + 1, r.step)
            for t in (chain.block_at(n, r.step - 1) or _empty()).tasks
        }
        assert orphaned, "the fake chain orphans tasks"
        assert carried, "and carries others into the new branch"
        assert seen >= orphaned
        for task_id in orphaned:
            record = await store.get_task(task_id)
            assert (record.status, record.last_error) == (TaskStatus.FAILED, "reorg")
        for task_id in canonical:
            assert await status_of(store, task_id) == TaskStatus.PENDING
        assert poller.orphaned_failed == len(orphaned)
        assert poller.conflicts == len(carried)  # stored with the old block hash, kept
        # the stored block records are the canonical chain's
        for number in range(last - 5, last + 1):
            block = chain.block_at(number, last)
            assert block is not None
            assert await store.get_block(CHAIN, number) == block.record()

    run_virtual(main)


def test_a_worker_holding_an_orphaned_task_cannot_complete_it(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain()
        reorg = chain.reorgs(100)[2]
        chain.set_step(reorg.step - 1)
        poller = ChainPoller(store, chain, "p1")
        await poller.poll_once()
        held = await store.claim_tasks("worker", limit=1000, lease_s=600)
        chain.set_step(reorg.step)
        await poller.poll_once()
        orphaned = chain.orphaned_task_ids() - chain.orphaned_task_ids(reorg.step - 1)
        assert orphaned
        outcomes: dict[str, str] = {}
        for claimed in held:
            try:
                await store.complete_task(claimed.task.task_id, claimed.token)
                outcomes[claimed.task.task_id] = "completed"
            except StaleLeaseError:
                outcomes[claimed.task.task_id] = "stale"
        assert {i for i, o in outcomes.items() if o == "stale"} == orphaned
        assert {i for i, o in outcomes.items() if o == "completed"} == set(outcomes) - orphaned

    run_virtual(main)


def test_a_task_worker_holding_an_orphaned_task_counts_it_stale(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain()
        reorg = chain.reorgs(100)[0]
        orphaned_block = chain.block_at(reorg.step - 1, reorg.step - 1)
        assert orphaned_block is not None
        chain.set_step(reorg.step - 1)
        poller = ChainPoller(store, chain, "p1")
        await poller.poll_once()
        release = asyncio.Event()

        async def handler(claimed: Any) -> None:
            await release.wait()

        worker = TaskWorker(store, "w1", handler, concurrency=1000, lease_s=600)
        run = asyncio.create_task(worker.run())
        await wait_until(lambda: _true(worker.running == len(chain.canonical_tasks())))
        chain.set_step(reorg.step)
        await poller.poll_once()
        release.set()
        await asyncio.sleep(1)
        await worker.stop()
        await run
        orphaned = chain.orphaned_task_ids() - chain.orphaned_task_ids(reorg.step - 1)
        assert worker.stale == len(orphaned) > 0
        assert worker.completed == worker.claimed - len(orphaned)

    run_virtual(main)


def test_a_poller_that_lost_its_lease_stops_writing(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain(reorg_every=None, step=5)
        first = ChainPoller(store, chain, "p1", lease_ttl_s=10)
        second = ChainPoller(store, chain, "p2", lease_ttl_s=10)
        assert await first.poll_once() == 6
        assert await second.poll_once() == 0  # the lease is p1's
        assert first.lease is not None
        old = first.lease
        # p1 stalls mid-pass (its RPC hangs) well past its lease ...
        chain.set_step(8)
        stall = asyncio.Event()
        stalled_chain = _StallingChain(chain, stall)
        first.chain = stalled_chain
        first_pass = asyncio.create_task(first.poll_once())
        await asyncio.sleep(11)
        # ... another replica takes over after the ttl and moves on
        assert await second.poll_once() == 3
        assert second.lease is not None
        assert second.lease.token > old.token
        stall.set()
        assert await first_pass == 0
        assert first.lease is None
        assert first.leases_lost == 1
        assert first.blocks == 6, "nothing written after the lease was lost"
        assert await store.get_last_processed_block(CHAIN) == 8
        # the old token's fenced writes are refused
        with pytest.raises(StaleLeaseError):
            await store.set_last_processed_block(CHAIN, 9, fence=old.token)
        with pytest.raises(StaleLeaseError):
            await store.rewind_chain(CHAIN, 3, fence=old.token)
        with pytest.raises(StaleLeaseError):
            await store.fail_orphaned_tasks(CHAIN, 3, fence=old.token)

    run_virtual(main)


def test_stop_releases_the_chain_lease_and_a_restart_resumes_from_the_cursor(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain(step=10)
        poller = ChainPoller(store, chain, "p1", poll_interval_s=0.5)
        run = asyncio.create_task(poller.run())
        await wait_until(lambda: _true(poller.blocks == 11))
        await poller.stop()
        await run
        assert poller.lease is None
        assert await store.get_last_processed_block(CHAIN) == 10
        chain.set_step(15)
        restarted = ChainPoller(store, chain, "p2", start_block=0)  # released: taken at once
        assert await restarted.poll_once() == 5
        assert restarted.tasks_saved == sum(
            len((chain.block_at(n, 15) or _empty()).tasks) for n in range(11, 16)
        ) - _carried_count(chain, 10, 15)
        assert await store.get_last_processed_block(CHAIN) == 15

    run_virtual(main)


def test_start_block_and_confirmations(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain(reorg_every=None, step=30)
        poller = ChainPoller(store, chain, "p1", start_block=20, confirmations=4)
        assert await poller.poll_once() == 7  # 20 .. 26
        with pytest.raises(NotFoundError):
            await store.get_block(CHAIN, 19)
        assert await store.get_last_processed_block(CHAIN) == 26

    run_virtual(main)


def test_a_reorg_interrupted_between_failing_and_rewinding_is_finished_later(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        inner = MemoryAggregatorStore(namespace, clock=clock)
        chain = fake_chain()
        reorg = chain.reorgs(100)[1]
        chain.set_step(reorg.step - 1)
        first = ChainPoller(inner, chain, "p1")
        await first.poll_once()
        chain.set_step(reorg.step)
        crashing = FlakyStore(inner)
        crashing.raise_on["rewind_chain"] = _Crash()
        first.store = crashing
        with pytest.raises(_Crash):
            await first.poll_once()  # failed the orphans, died before the rewind
        assert first.reorgs == 0
        clock.advance(30)  # its lease lapses
        second = ChainPoller(inner, chain, "p2")
        await second.poll_once()
        assert second.reorgs == 1
        assert await inner.get_last_processed_block(CHAIN) == reorg.step
        for task_id in chain.orphaned_task_ids() - chain.orphaned_task_ids(reorg.step - 1):
            assert await status_of(inner, task_id) == TaskStatus.FAILED
        for task in chain.canonical_tasks():
            assert await status_of(inner, task.task_id) == TaskStatus.PENDING

    run_virtual(main)


def test_store_unavailable_is_repeated(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        flaky = FlakyStore(MemoryAggregatorStore(namespace, clock=clock))
        chain = fake_chain()
        reorg = chain.reorgs(100)[0]
        chain.set_step(reorg.step - 1)
        poller = ChainPoller(flaky, chain, "p1")
        flaky.fail_after["save_tasks"] = 2
        flaky.fail_after["set_last_processed_block"] = 1
        await poller.poll_once()
        chain.set_step(reorg.step)
        flaky.fail_after["fail_orphaned_tasks"] = 1
        flaky.fail_after["rewind_chain"] = 1
        await poller.poll_once()
        assert poller.store_retries == 5
        assert poller.reorgs == 1
        assert await flaky.get_last_processed_block(CHAIN) == reorg.step
        for task_id in chain.orphaned_task_ids():  # the first reorg: the poller saw every one
            assert await status_of(flaky, task_id) == TaskStatus.FAILED

    run_virtual(main)


def _carried_count(chain: FakeChain, below: int, step: int) -> int:
    """Tasks in blocks above ``below`` that were already saved from an earlier version."""
    earlier = {t.task_id for t in chain.canonical_tasks(below)} | chain.orphaned_task_ids(below)
    return sum(
        t.task_id in earlier
        for n in range(below + 1, step + 1)
        for t in (chain.block_at(n, step) or _empty()).tasks
    )


async def _true(value: bool) -> bool:
    return value


def _empty() -> ChainBlock:
    return ChainBlock(chain_id=CHAIN, number=0, hash="", parent_hash="", timestamp=0)


class _Crash(Exception):
    pass


class _StallingChain:
    """A chain source whose block() hangs until ``release`` is set."""

    def __init__(self, inner: FakeChain, release: asyncio.Event) -> None:
        self.inner = inner
        self.release = release
        self.chain_id = inner.chain_id

    async def head(self) -> int:
        return await self.inner.head()

    async def block(self, number: int) -> ChainBlock | None:
        await self.release.wait()
        return await self.inner.block(number)
