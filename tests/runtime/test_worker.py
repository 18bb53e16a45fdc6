"""TaskWorker on the fake store, in virtual time (see _runtime_support)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from _runtime_support import FlakyStore, run_virtual, wait_until

from ponos_redis import (
    ClaimedTask,
    ManualClock,
    MemoryAggregatorStore,
    NamespaceLostError,
    TaskStatus,
)
from ponos_redis.runtime import Reaper, RetryPolicy, RuntimeEvent, TaskWorker
from ponos_redis.testing import make_task, make_tasks, reset_memory_namespaces

FAST_RETRY = RetryPolicy(attempts=5, base_backoff_s=0.01, max_backoff_s=0.1)


def store_for(namespace: str, clock: ManualClock, **tuning: Any) -> MemoryAggregatorStore:
    return MemoryAggregatorStore(namespace, clock=clock, **tuning)


async def statuses(store: Any, ids: list[str]) -> dict[str, TaskStatus]:
    return {i: (await store.get_task(i)).status for i in ids}


def all_in(store: Any, ids: list[str], status: TaskStatus) -> Any:
    async def check() -> bool:
        return set((await statuses(store, ids)).values()) == {status}

    return check


def test_worker_completes_every_task(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        tasks = make_tasks(7)
        await store.save_tasks(tasks)
        seen: list[str] = []
        events: list[RuntimeEvent] = []

        async def handler(claimed: ClaimedTask) -> None:
            await asyncio.sleep(0.5)
            seen.append(claimed.task.task_id)

        worker = TaskWorker(store, "w1", handler, concurrency=3, lease_s=5, on_event=events.append)
        run = asyncio.create_task(worker.run())
        ids = [t.task_id for t in tasks]
        await wait_until(all_in(store, ids, TaskStatus.COMPLETED))
        await worker.stop()
        await run
        assert sorted(seen) == ids
        assert (worker.claimed, worker.completed, worker.failed, worker.stale) == (7, 7, 0, 0)
        assert worker.running == 0
        assert sum(e.kind == "completed" for e in events) == 7
        assert all(e.component == "worker" and e.owner == "w1" for e in events)

    run_virtual(main)


def test_idle_worker_sleeps_between_empty_claims(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = FlakyStore(store_for(namespace, clock))
        worker = TaskWorker(store, "w1", lambda c: asyncio.sleep(0), poll_interval_s=0.5)
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(10)
        await worker.stop()
        await run
        # one claim per 0.5 s (±20% jitter), never a busy loop
        assert 10 / 0.6 - 1 <= store.calls["claim_tasks"] <= 10 / 0.4 + 1

    run_virtual(main)


def test_handler_error_fails_the_task_for_retry(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock, max_attempts=2)
        await store.save_task(make_task("boom"))

        async def handler(claimed: ClaimedTask) -> None:
            raise RuntimeError(f"attempt {claimed.attempt} broke")

        worker = TaskWorker(store, "w1", handler, lease_s=5)
        run = asyncio.create_task(worker.run())
        await wait_until(all_in(store, ["boom"], TaskStatus.FAILED))
        await worker.stop()
        await run
        record = await store.get_task("boom")
        assert record.attempts == 2
        assert "RuntimeError: attempt 2 broke" in (record.last_error or "")
        assert worker.failed == 2
        assert worker.completed == 0

    run_virtual(main)


def test_worker_renews_during_a_long_handler(namespace: str) -> None:
    """The handler runs 20 s on a 3 s lease while a reaper runs every second: the
    renewals keep the task; a task claimed alongside without renewals is reaped."""

    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        await store.save_task(make_task("long"))

        async def handler(claimed: ClaimedTask) -> None:
            await asyncio.sleep(20)

        worker = TaskWorker(store, "w1", handler, concurrency=1, lease_s=3, renew_every_s=1)
        reaper = Reaper(store, "r1", interval_s=1)
        reaping = asyncio.create_task(reaper.run())
        run = asyncio.create_task(worker.run())
        await wait_until(all_in(store, ["long"], TaskStatus.PROCESSING))
        # the control: the same lease, nobody renewing it
        await store.save_task(make_task("unrenewed"))
        [ghost] = await store.claim_tasks("ghost", limit=1, lease_s=3)
        assert ghost.task.task_id == "unrenewed"
        await wait_until(all_in(store, ["long"], TaskStatus.COMPLETED), timeout_s=60)
        await wait_until(all_in(store, ["unrenewed"], TaskStatus.COMPLETED), timeout_s=60)
        await worker.stop()
        await reaper.stop()
        await asyncio.gather(run, reaping)
        long = await store.get_task("long")
        unrenewed = await store.get_task("unrenewed")
        assert long.attempts == 1, "the long task was never reaped"
        assert unrenewed.attempts == 2, "the unrenewed one was reaped and claimed again"
        assert worker.renewals >= 15
        assert reaper.reaped == 1
        assert (worker.completed, worker.stale) == (2, 0)

    run_virtual(main)


def test_stale_renewal_cancels_the_handler_before_its_side_effect(namespace: str) -> None:
    """Another replica takes the task over while the handler runs (here: the
    operator's override sends it back to pending, with a new token, and a second
    worker claims it): the first worker's next renewal is refused, its handler is
    cancelled before its side effect, and it neither completes nor fails the task."""

    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        await store.save_task(make_task("contested"))
        side_effects: list[tuple[str, int]] = []
        cancelled_at: list[float] = []
        loop = asyncio.get_running_loop()

        def handler_for(name: str, work_s: float) -> Any:
            async def handler(claimed: ClaimedTask) -> None:
                try:
                    await asyncio.sleep(work_s)
                except asyncio.CancelledError:
                    cancelled_at.append(loop.time())
                    raise
                side_effects.append((name, claimed.token))

            return handler

        first = TaskWorker(store, "w1", handler_for("w1", 10), lease_s=3, renew_every_s=1)
        run1 = asyncio.create_task(first.run())
        await wait_until(all_in(store, ["contested"], TaskStatus.PROCESSING))
        taken_at = loop.time()
        await store.update_task_status("contested", TaskStatus.PENDING)
        [second] = await store.claim_tasks("w2", limit=1, lease_s=30)
        await wait_until(lambda: _true(first.stale == 1))
        assert len(cancelled_at) == 1
        assert cancelled_at[0] - taken_at <= 1.0 + 1e-3, "cancelled at its next renewal"
        await store.complete_task("contested", second.token)
        await asyncio.sleep(15)  # long past the first handler's would-be side effect
        await first.stop()
        await run1
        assert side_effects == []
        assert (first.completed, first.failed, first.stale, first.released) == (0, 0, 1, 0)
        record = await store.get_task("contested")
        assert (record.status, record.owner, record.token) == (TaskStatus.COMPLETED, "w2", second.token)

    run_virtual(main)


def test_lease_past_due_without_renewal_cancels_the_handler(namespace: str) -> None:
    """Renewals hang (the store is unreachable): once the lease is past due by the
    worker's own clock the handler is cancelled; the reaper hands the task to
    another worker, and the first never completes it."""

    async def main(clock: ManualClock) -> None:
        inner = store_for(namespace, clock)
        await inner.save_task(make_task("t"))
        slow = FlakyStore(inner)
        slow.delay["renew_task_lease"] = 3600
        done: list[str] = []

        def handler_for(name: str) -> Any:
            async def handler(claimed: ClaimedTask) -> None:
                await asyncio.sleep(10)
                done.append(name)

            return handler

        first = TaskWorker(slow, "w1", handler_for("w1"), lease_s=3, renew_every_s=1)
        run1 = asyncio.create_task(first.run())
        await wait_until(lambda: _true(first.stale == 1), timeout_s=10)
        await first.stop()  # or it would claim the task again, and hang again
        await run1
        assert first.released == 0
        second = TaskWorker(inner, "w2", handler_for("w2"), lease_s=3, renew_every_s=1)
        reaper = Reaper(inner, "r", interval_s=1)
        tasks = [asyncio.create_task(second.run()), asyncio.create_task(reaper.run())]
        await wait_until(all_in(inner, ["t"], TaskStatus.COMPLETED), timeout_s=60)
        for service in (second, reaper):
            await service.stop()
        await asyncio.gather(*tasks)
        assert done == ["w2"]
        assert (first.completed, first.stale) == (0, 1)
        assert (await inner.get_task("t")).owner == "w2"

    run_virtual(main)


@pytest.mark.parametrize("mode", ["before", "after"])
def test_store_unavailable_on_complete_is_repeated(namespace: str, mode: str) -> None:
    async def main(clock: ManualClock) -> None:
        flaky = FlakyStore(store_for(namespace, clock))
        await flaky.save_task(make_task("t"))
        (flaky.fail_before if mode == "before" else flaky.fail_after)["complete_task"] = 1
        worker = TaskWorker(flaky, "w1", lambda c: asyncio.sleep(0.1), lease_s=5, retry=FAST_RETRY)
        run = asyncio.create_task(worker.run())
        await wait_until(all_in(flaky, ["t"], TaskStatus.COMPLETED))
        await asyncio.sleep(1)
        await worker.stop()
        await run
        assert flaky.calls["complete_task"] == 2
        assert (worker.completed, worker.stale, worker.abandoned, worker.store_retries) == (1, 0, 0, 1)

    run_virtual(main)


def test_store_unavailable_on_claim_and_renew_is_repeated(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        flaky = FlakyStore(store_for(namespace, clock))
        await flaky.save_task(make_task("t"))
        flaky.fail_after["claim_tasks"] = 1  # the first claim is applied, its reply lost
        flaky.fail_before["renew_task_lease"] = 2
        worker = TaskWorker(
            flaky, "w1", lambda c: asyncio.sleep(4), lease_s=3, renew_every_s=1, retry=FAST_RETRY
        )
        reaper = Reaper(flaky, "r", interval_s=1)
        tasks = [asyncio.create_task(worker.run()), asyncio.create_task(reaper.run())]
        await wait_until(all_in(flaky, ["t"], TaskStatus.COMPLETED), timeout_s=60)
        await worker.stop()
        await reaper.stop()
        await asyncio.gather(*tasks)
        record = await flaky.get_task("t")
        # the lost claim stranded the task until its lease expired and the reaper returned it
        assert record.attempts == 2
        assert reaper.reaped == 1
        assert worker.completed == 1
        assert worker.store_retries >= 3

    run_virtual(main)


def test_concurrency_is_bounded(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        tasks = make_tasks(20)
        await store.save_tasks(tasks)
        running = 0
        peak = 0

        async def handler(claimed: ClaimedTask) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(1 + claimed.attempt * 0.1)
            finally:
                running -= 1

        worker = TaskWorker(store, "w1", handler, concurrency=3, lease_s=10, claim_limit=2)
        run = asyncio.create_task(worker.run())
        await wait_until(all_in(store, [t.task_id for t in tasks], TaskStatus.COMPLETED))
        await worker.stop()
        await run
        assert peak == 3
        assert worker.peak_running == 3
        assert worker.completed == 20

    run_virtual(main)


@pytest.mark.parametrize("how", ["stop", "cancel", "signal"])
def test_shutdown_releases_every_held_task(namespace: str, how: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        tasks = make_tasks(6)
        ids = [t.task_id for t in tasks]
        await store.save_tasks(tasks)
        side_effects: list[str] = []

        async def handler(claimed: ClaimedTask) -> None:
            await asyncio.sleep(3600)
            side_effects.append(claimed.task.task_id)

        worker = TaskWorker(store, "w1", handler, concurrency=4, lease_s=30)
        run = asyncio.create_task(worker.run())
        await wait_until(lambda: _true(worker.running == 4))
        if how == "stop":
            await worker.stop()
            await run
        elif how == "cancel":
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
        else:
            worker.install_signal_handlers()
            signal.raise_signal(signal.SIGTERM)
            await run
        assert side_effects == []
        assert worker.released == 4
        assert worker.running == 0
        assert set((await statuses(store, ids)).values()) == {TaskStatus.PENDING}
        # another replica takes them at once, without waiting for any lease
        taken = await store.claim_tasks("w2", limit=10, lease_s=30)
        assert sorted(c.task.task_id for c in taken) == ids

    run_virtual(main)


def test_namespace_lost_stops_the_worker(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        await store.save_tasks(make_tasks(2))
        worker = TaskWorker(store, "w1", lambda c: asyncio.sleep(3600), lease_s=3)
        run = asyncio.create_task(worker.run())
        await wait_until(lambda: _true(worker.running == 2))
        reset_memory_namespaces(namespace)
        with pytest.raises(NamespaceLostError):
            await run
        assert worker.running == 0
        assert worker.released == 0

    run_virtual(main)


def test_invalid_settings_are_refused() -> None:
    store: Any = object()
    with pytest.raises(ValueError, match="renew_every_s"):
        TaskWorker(store, "w", lambda c: asyncio.sleep(0), lease_s=3, renew_every_s=3)
    with pytest.raises(ValueError, match="concurrency"):
        TaskWorker(store, "w", lambda c: asyncio.sleep(0), concurrency=0)


async def _true(value: bool) -> bool:
    return value


def test_a_swallowed_cancellation_is_repeated_until_the_handler_stops(namespace: str) -> None:
    """On Python 3.11 ``asyncio.wait_for`` (inside every redis-py command) can drop a
    cancellation that lands as its call completes. A handler that lost one that way
    must still stop before its side effect once the lease is gone, and at shutdown."""

    async def main(clock: ManualClock) -> None:
        store = store_for(namespace, clock)
        await store.save_tasks([make_task("contested"), make_task("held")])
        side_effects: list[str] = []
        swallowed: list[str] = []

        async def handler(claimed: ClaimedTask) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed.append(claimed.task.task_id)  # the cancellation is lost, as wait_for may
            await asyncio.sleep(10)
            side_effects.append(claimed.task.task_id)

        worker = TaskWorker(store, "w1", handler, concurrency=2, lease_s=3, renew_every_s=1)
        run = asyncio.create_task(worker.run())
        await wait_until(lambda: _true(worker.running == 2))
        await store.update_task_status("contested", TaskStatus.PENDING)  # the lease is taken away
        [other] = await store.claim_tasks("w2", limit=1, lease_s=60)
        await wait_until(lambda: _true(worker.stale == 1))
        await worker.stop()  # "held" is cancelled at shutdown, and swallows it too
        await run
        assert sorted(swallowed) == ["contested", "held"]
        assert side_effects == []
        assert worker.running == 0
        assert worker.released == 1
        assert (await store.get_task("held")).status is TaskStatus.PENDING
        assert (await store.get_task("contested")).token == other.token

    run_virtual(main)
