"""The event feed: one event per change, in order, resumable, capped."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from _helpers import (
    START,
    TIMEOUT_S,
    AggregatorFactory,
    claim_one,
    collect_events,
    make_task,
    make_tasks,
    task_in_status,
)

from ponos_redis import (
    AggregatorStore,
    InvalidTransitionError,
    ManualClock,
    StaleLeaseError,
    StoreEvent,
    TaskStatus,
)

STATUS_VALUES = {s.value for s in TaskStatus}


def kinds(events: list[StoreEvent]) -> list[str]:
    return [e.kind for e in events]


async def events_since(store: AggregatorStore, mark: str | None) -> list[StoreEvent]:
    return await collect_events(store, after=mark)


async def mark(store: AggregatorStore) -> str | None:
    events = await collect_events(store)
    return events[-1].id if events else None


def assert_plain_status(event: StoreEvent) -> None:
    if event.status is not None:
        assert type(event.status) is str, f"{event.kind}: status is {type(event.status).__name__}"


# ---------------------------------------------------------------- reading


async def test_no_events_in_a_fresh_namespace(aggregator: AggregatorStore) -> None:
    assert await collect_events(aggregator) == []


async def test_task_saved_event(aggregator: AggregatorStore, clock: ManualClock) -> None:
    clock.advance(2.5)
    await aggregator.save_task(make_task("t1"))
    [event] = await collect_events(aggregator)
    assert event.kind == "task.saved"
    assert event.subject == "t1"
    assert event.status == "pending"
    assert_plain_status(event)
    assert event.at == START + timedelta(seconds=2.5)
    assert isinstance(event.id, str)
    assert event.id


async def test_events_come_in_order_with_distinct_ids(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(make_tasks(5))
    await aggregator.save_task(make_task("last"))
    events = await collect_events(aggregator)
    assert [e.subject for e in events] == [*(f"task-{i:04d}" for i in range(5)), "last"]
    assert len({e.id for e in events}) == len(events)


async def test_after_resumes_after_that_event(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(make_tasks(4))
    events = await collect_events(aggregator)
    assert len(events) == 4
    for i, event in enumerate(events):
        rest = await collect_events(aggregator, after=event.id)
        assert [e.id for e in rest] == [e.id for e in events[i + 1 :]]
    assert await collect_events(aggregator, after=events[-1].id) == []
    await aggregator.save_task(make_task("new"))
    newer = await collect_events(aggregator, after=events[-1].id)
    assert [(e.kind, e.subject) for e in newer] == [("task.saved", "new")]


async def test_events_are_seen_by_replicas_not_other_namespaces(
    make_aggregator: AggregatorFactory, namespace: str
) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    other = await make_aggregator(namespace=f"{namespace}-other")
    await a.save_task(make_task("t1"))
    assert [e.subject for e in await collect_events(b)] == ["t1"]
    assert await collect_events(other) == []


async def test_events_after_close_of_another_replica(make_aggregator: AggregatorFactory) -> None:
    a = await make_aggregator()
    await a.save_task(make_task("t1"))
    await a.close()
    b = await make_aggregator()
    assert [e.subject for e in await collect_events(b)] == ["t1"]


# ---------------------------------------------------------------- task events


async def test_claim_complete_events(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    start = await mark(aggregator)
    clock.advance(1)
    claimed = await claim_one(aggregator, "t1", owner="w-1")
    clock.advance(1)
    await aggregator.complete_task("t1", claimed.token)
    events = await events_since(aggregator, start)
    assert kinds(events) == ["task.claimed", "task.completed"]
    claim_ev, done_ev = events
    assert (claim_ev.subject, claim_ev.status, claim_ev.owner, claim_ev.token) == (
        "t1",
        "processing",
        "w-1",
        claimed.token,
    )
    assert claim_ev.at == START + timedelta(seconds=1)
    assert done_ev.subject == "t1"
    assert done_ev.status == "completed"
    assert done_ev.at == START + timedelta(seconds=2)
    for event in events:
        assert_plain_status(event)


async def test_fail_event(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    start = await mark(aggregator)
    await aggregator.fail_task("t1", claimed.token, "bad")
    [event] = await events_since(aggregator, start)
    assert (event.kind, event.subject, event.status) == ("task.failed", "t1", "failed")
    assert_plain_status(event)


async def test_retry_event(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    start = await mark(aggregator)
    await aggregator.fail_task("t1", claimed.token, "flaky", retry=True)
    [event] = await events_since(aggregator, start)
    assert (event.kind, event.subject, event.status) == ("task.retried", "t1", "pending")


async def test_retry_past_max_attempts_is_a_failure_event(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator(max_attempts=1)
    await store.save_task(make_task("t1"))
    claimed = await claim_one(store, "t1")
    start = await mark(store)
    await store.fail_task("t1", claimed.token, "flaky", retry=True)
    [event] = await events_since(store, start)
    assert (event.kind, event.subject, event.status) == ("task.failed", "t1", "failed")


async def test_release_event(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    start = await mark(aggregator)
    await aggregator.release_task("t1", claimed.token)
    [event] = await events_since(aggregator, start)
    assert (event.kind, event.subject, event.status) == ("task.released", "t1", "pending")


async def test_renew_changes_no_status_and_emits_no_lifecycle_event(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    start = await mark(aggregator)
    await aggregator.renew_task_lease("t1", claimed.token, lease_s=60)
    events = await events_since(aggregator, start)
    assert all(e.kind not in {"task.released", "task.completed", "task.failed", "task.saved"} for e in events)


async def test_reap_events(make_aggregator: AggregatorFactory, clock: ManualClock) -> None:
    store = await make_aggregator(max_attempts=2)
    await store.save_tasks([make_task("once"), make_task("twice")])
    await claim_one(store, "once", lease_s=5)
    await claim_one(store, "twice", lease_s=5)
    clock.advance(5)
    await store.reap_expired_leases()
    claimed = await claim_one(store, "once", lease_s=5)
    assert claimed.attempt == 2
    start = await mark(store)
    clock.advance(5)
    assert await store.reap_expired_leases() == 1
    [event] = await events_since(store, start)
    assert (event.kind, event.subject, event.status) == ("task.reaped", "once", "failed")
    all_events = await collect_events(store)
    reaped = [(e.subject, e.status) for e in all_events if e.kind == "task.reaped"]
    assert sorted(reaped[:2]) == [("once", "pending"), ("twice", "pending")]
    assert reaped[2:] == [("once", "failed")]


async def test_delete_event(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    start = await mark(aggregator)
    await aggregator.delete_task("t1")
    [event] = await events_since(aggregator, start)
    assert (event.kind, event.subject, event.status) == ("task.deleted", "t1", None)


async def test_deadline_failure_at_claim_event(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_tasks([make_task("late", deadline=START + timedelta(seconds=1)), make_task("ok")])
    start = await mark(aggregator)
    clock.advance(2)
    await aggregator.claim_tasks("w", limit=1, lease_s=30)
    events = await events_since(aggregator, start)
    assert [(e.kind, e.subject, e.status) for e in events] == [
        ("task.failed", "late", "failed"),
        ("task.claimed", "ok", "processing"),
    ]


@pytest.mark.parametrize(
    ("current", "target", "kind"),
    [
        (TaskStatus.PENDING, TaskStatus.PROCESSING, "task.claimed"),
        (TaskStatus.PENDING, TaskStatus.FAILED, "task.failed"),
        (TaskStatus.PROCESSING, TaskStatus.PENDING, "task.released"),
        (TaskStatus.PROCESSING, TaskStatus.COMPLETED, "task.completed"),
        (TaskStatus.PROCESSING, TaskStatus.FAILED, "task.failed"),
        (TaskStatus.FAILED, TaskStatus.PENDING, "task.released"),
    ],
)
async def test_override_events(
    aggregator: AggregatorStore, current: TaskStatus, target: TaskStatus, kind: str
) -> None:
    await task_in_status(aggregator, current, "t1")
    start = await mark(aggregator)
    await aggregator.update_task_status("t1", target)
    [event] = await events_since(aggregator, start)
    assert (event.kind, event.subject, event.status) == (kind, "t1", target.value)
    assert_plain_status(event)
    assert event.owner == "manual"  # every override is an operator's action
    assert event.token == (await aggregator.get_task("t1")).token


async def test_noops_emit_nothing(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    await aggregator.save_task(make_task("t2"))
    c1 = await claim_one(aggregator, "t1")
    await aggregator.complete_task("t1", c1.token)
    c2 = await claim_one(aggregator, "t2")
    await aggregator.fail_task("t2", c2.token, "x")
    await aggregator.set_last_processed_block(1, 10)
    start = await mark(aggregator)
    assert start is not None
    await aggregator.save_task(make_task("t1"))
    await aggregator.save_tasks([make_task("t1"), make_task("t2")])
    await aggregator.complete_task("t1", c1.token)
    await aggregator.fail_task("t2", c2.token, "x")
    await aggregator.update_task_status("t1", TaskStatus.COMPLETED)
    await aggregator.update_task_status("t2", TaskStatus.FAILED)
    await aggregator.set_last_processed_block(1, 10)
    assert await aggregator.reap_expired_leases() == 0
    assert await aggregator.claim_tasks("w", limit=5, lease_s=5) == []
    assert await events_since(aggregator, start) == []


async def test_refused_changes_emit_nothing(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    await aggregator.complete_task("t1", claimed.token)
    start = await mark(aggregator)
    with pytest.raises(InvalidTransitionError):
        await aggregator.update_task_status("t1", TaskStatus.PENDING)
    with pytest.raises(StaleLeaseError):
        await aggregator.complete_task("t1", claimed.token + 1)
    assert await events_since(aggregator, start) == []


# ---------------------------------------------------------------- chain events


async def test_chain_events(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(11155111, 10)
    await aggregator.set_last_processed_block(11155111, 12)
    await aggregator.rewind_chain(11155111, 11)
    events = await collect_events(aggregator)
    assert [(e.kind, e.subject) for e in events] == [
        ("chain.advanced", "11155111"),
        ("chain.advanced", "11155111"),
        ("chain.rewound", "11155111"),
    ]


# ---------------------------------------------------------------- waiting for events


async def test_blocking_read_receives_a_later_event(make_aggregator: AggregatorFactory) -> None:
    reader_store = await make_aggregator()
    writer_store = await make_aggregator()
    await writer_store.save_task(make_task("before"))
    start = await mark(reader_store)
    received: list[StoreEvent] = []
    reading = asyncio.Event()

    async def reader() -> None:
        reading.set()
        async for event in reader_store.events(after=start, block_s=0.2):
            received.append(event)
            if event.subject == "after":
                return

    async def writer() -> None:
        await reading.wait()
        await asyncio.sleep(0.05)
        await writer_store.save_task(make_task("after"))

    async with asyncio.timeout(TIMEOUT_S):
        await asyncio.gather(reader(), writer())
    assert [(e.kind, e.subject) for e in received] == [("task.saved", "after")]


async def test_blocking_read_ends_when_nothing_comes(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    began = time.monotonic()
    async with asyncio.timeout(TIMEOUT_S):
        got = [e async for e in aggregator.events(block_s=0.1)]
    elapsed = time.monotonic() - began
    assert [e.subject for e in got] == ["t1"]
    assert elapsed < 2.0


async def test_blocking_read_on_an_empty_feed_ends(aggregator: AggregatorStore) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        got = [e async for e in aggregator.events(block_s=0.05)]
    assert got == []


async def test_blocking_read_delivers_a_burst(make_aggregator: AggregatorFactory) -> None:
    reader_store = await make_aggregator()
    writer_store = await make_aggregator()
    received: list[str] = []
    reading = asyncio.Event()

    async def reader() -> None:
        reading.set()
        async for event in reader_store.events(block_s=0.3):
            received.append(event.subject)
            if len(received) == 10:
                return

    async def writer() -> None:
        await reading.wait()
        await asyncio.sleep(0.02)
        for task in make_tasks(10):
            await writer_store.save_task(task)

    async with asyncio.timeout(TIMEOUT_S):
        await asyncio.gather(reader(), writer())
    assert received == [f"task-{i:04d}" for i in range(10)]


# ---------------------------------------------------------------- cap


async def test_stream_is_capped(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator(events_maxlen=10)
    for batch in range(10):
        await store.save_tasks(make_tasks(100, prefix=f"b{batch}"))
    events = await collect_events(store)
    assert 0 < len(events) < 1000
    assert events[-1].subject == "b9-0099"
    # the records themselves are all there: a reader can resync from them
    assert (await store.count_tasks())[TaskStatus.PENDING] == 1000


async def test_every_event_status_is_a_plain_task_status(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_tasks(make_tasks(4))
    c = await aggregator.claim_tasks("w", limit=4, lease_s=5)
    await aggregator.complete_task(c[0].task.task_id, c[0].token)
    await aggregator.fail_task(c[1].task.task_id, c[1].token, "x")
    await aggregator.fail_task(c[2].task.task_id, c[2].token, "x", retry=True)
    clock.advance(5)
    await aggregator.reap_expired_leases()
    await aggregator.delete_task(c[0].task.task_id)
    events = await collect_events(aggregator)
    assert len(events) == 4 + 4 + 4 + 1
    for event in events:
        assert_plain_status(event)
        if event.kind.startswith("task.") and event.kind != "task.deleted":
            assert event.status in STATUS_VALUES
