"""Reaper: one reap per interval across replicas, and the takeover bound."""

from __future__ import annotations

import asyncio
import signal

import pytest
from _runtime_support import FlakyStore, run_virtual

from ponos_redis import ManualClock, MemoryAggregatorStore, TaskStatus
from ponos_redis.runtime import Reaper, TaskWorker, stop_on_signals
from ponos_redis.testing import make_task, make_tasks


def test_two_reapers_one_interval_only_one_reaps(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        shared = FlakyStore(MemoryAggregatorStore(namespace, clock=clock))
        first = Reaper(shared, "replica-1", interval_s=2)
        second = Reaper(shared, "replica-2", interval_s=2)
        assert await first.run_once() is True
        assert await second.run_once() is False
        assert shared.calls["reap_expired_leases"] == 1
        clock.advance(2)  # the guard lapses after its ttl (the interval)
        assert await second.run_once() is True
        assert await first.run_once() is False
        assert shared.calls["reap_expired_leases"] == 2
        assert (first.runs, first.skipped, second.runs, second.skipped) == (1, 1, 1, 1)

    run_virtual(main)


def test_replicas_running_together_reap_once_per_interval(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        shared = FlakyStore(MemoryAggregatorStore(namespace, clock=clock))
        reapers = [Reaper(shared, f"replica-{i}", interval_s=1) for i in range(3)]
        runs = [asyncio.create_task(r.run()) for r in reapers]
        await asyncio.sleep(9.5)  # ticks at 0, 1, ..., 9
        for r in reapers:
            await r.stop()
        await asyncio.gather(*runs)
        assert shared.calls["reap_expired_leases"] == 10
        assert sum(r.runs for r in reapers) == 10
        assert sum(r.skipped for r in reapers) == 20

    run_virtual(main)


def test_takeover_bound_lease_plus_interval(namespace: str) -> None:
    """Killed at t0 right after claiming: pending again by t0 + lease + interval.

    Worst case: the lease expires just after a live tick, so the next tick,
    one interval later, reaps it."""
    lease, interval = 5.0, 2.0

    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        loop = asyncio.get_running_loop()
        await store.save_tasks(make_tasks(3))
        live = Reaper(store, "live", interval_s=interval)  # ticks at 0, 2, 4, ...
        run = asyncio.create_task(live.run())
        await asyncio.sleep(1.001)
        t0 = loop.time()
        claimed = await store.claim_tasks("killed", limit=3, lease_s=lease)  # expires at 6.001
        elapsed = await _until_pending(store, claimed[0].task.task_id) - t0
        await live.stop()
        await run
        assert lease + interval - 0.05 <= elapsed <= lease + interval + 0.01
        assert live.reaped == 3

    run_virtual(main)


def test_takeover_bound_when_the_killed_replica_held_the_guard(namespace: str) -> None:
    """The killed replica held the reaper guard: its tasks are pending again by
    t0 + max(lease, guard ttl) + interval (here the guard term dominates)."""
    lease, interval = 1.0, 4.0

    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        loop = asyncio.get_running_loop()
        await store.save_tasks(make_tasks(3))
        t0 = loop.time()
        killed = Reaper(store, "killed", interval_s=interval)
        assert await killed.run_once()  # holds the guard until t0 + 4
        claimed = await store.claim_tasks("killed", limit=3, lease_s=lease)
        await asyncio.sleep(3.9)  # the live replica's ticks fall just before the guard lapses
        live = Reaper(store, "live", interval_s=interval)
        run = asyncio.create_task(live.run())
        elapsed = await _until_pending(store, claimed[0].task.task_id) - t0
        await live.stop()
        await run
        bound = max(lease, live.guard_ttl_s) + interval
        assert lease + interval < elapsed <= bound + 0.01
        assert live.skipped == 1
        assert live.reaped == 3

    run_virtual(main)


async def _until_pending(store: MemoryAggregatorStore, task_id: str) -> float:
    while True:
        if (await store.get_task(task_id)).status == TaskStatus.PENDING:
            return asyncio.get_running_loop().time()
        await asyncio.sleep(0.001)


def test_unavailable_store_is_retried_then_next_interval(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        flaky = FlakyStore(MemoryAggregatorStore(namespace, clock=clock))
        await flaky.save_task(make_task("t"))
        await flaky.claim_tasks("doomed", limit=1, lease_s=1)
        flaky.fail_before["reap_expired_leases"] = 5  # more than one attempt's repetitions
        reaper = Reaper(flaky, "r", interval_s=1)
        run = asyncio.create_task(reaper.run())
        await asyncio.sleep(5.5)
        await reaper.stop()
        await run
        assert reaper.errors >= 1
        assert reaper.store_retries >= 4
        assert reaper.reaped == 1
        assert (await flaky.get_task("t")).status == TaskStatus.PENDING

    run_virtual(main)


def test_guard_ttl_above_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="guard_ttl_s"):
        Reaper(object(), "r", interval_s=1, guard_ttl_s=1.5)  # type: ignore[arg-type]


def test_one_signal_stops_every_service(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryAggregatorStore(namespace, clock=clock)
        await store.save_task(make_task("t"))
        worker = TaskWorker(store, "w", lambda c: asyncio.sleep(3600), lease_s=30)
        reaper = Reaper(store, "w", interval_s=1)
        runs = [asyncio.create_task(worker.run()), asyncio.create_task(reaper.run())]
        await asyncio.sleep(2.5)  # reaper ticks at 0, 1 and 2
        stop_on_signals(worker, reaper)
        signal.raise_signal(signal.SIGTERM)
        await asyncio.gather(*runs)
        assert worker.released == 1
        assert reaper.runs == 3
        assert (await store.get_task("t")).status == TaskStatus.PENDING

    run_virtual(main)
