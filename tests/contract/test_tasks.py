"""Tasks: saving, reading, listing, counting, deleting and trimming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from _helpers import AVS_A, AVS_B, START, AggregatorFactory, claim_one, make_task, make_tasks, task_in_status

from ponos_redis import (
    AggregatorStore,
    AlreadyExistsError,
    InvalidInputError,
    ManualClock,
    NotFoundError,
    Task,
    TaskStatus,
)


def ids(tasks: list[Task]) -> list[str]:
    return [t.task_id for t in tasks]


# ---------------------------------------------------------------- save_task


async def test_save_task_creates_a_pending_record(aggregator: AggregatorStore) -> None:
    task = make_task("t1")
    assert await aggregator.save_task(task) is True
    record = await aggregator.get_task("t1")
    assert record.task == task
    assert record.status == TaskStatus.PENDING
    assert record.attempts == 0
    assert record.owner is None
    assert record.token is None
    assert record.lease_until is None
    assert record.last_error is None
    assert record.created_at == START
    assert record.updated_at == START


async def test_save_task_times_come_from_the_clock(aggregator: AggregatorStore, clock: ManualClock) -> None:
    clock.advance(3600.25)
    await aggregator.save_task(make_task("t1"))
    record = await aggregator.get_task("t1")
    expected = START + timedelta(seconds=3600.25)
    assert record.created_at == expected
    assert record.updated_at == expected


async def test_save_identical_task_again_returns_false(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    task = make_task("t1")
    assert await aggregator.save_task(task) is True
    before = await aggregator.get_task("t1")
    clock.advance(10)
    assert await aggregator.save_task(task) is False
    assert await aggregator.get_task("t1") == before
    counts = await aggregator.count_tasks()
    assert counts[TaskStatus.PENDING] == 1


@pytest.mark.parametrize("status", [TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED])
async def test_save_identical_task_after_it_moved_on_returns_false(
    aggregator: AggregatorStore, clock: ManualClock, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    clock.advance(5)
    assert await aggregator.save_task(make_task("t1")) is False
    assert await aggregator.get_task("t1") == before


async def test_save_different_task_under_same_id_raises(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    before = await aggregator.get_task("t1")
    for different in (
        make_task("t1", payload=b"other"),
        make_task("t1", block_number=101),
        make_task("t1", avs_address=AVS_B),
        make_task("t1", deadline=START + timedelta(hours=1)),
    ):
        with pytest.raises(AlreadyExistsError):
            await aggregator.save_task(different)
    assert await aggregator.get_task("t1") == before


async def test_save_different_task_over_completed_one_raises(aggregator: AggregatorStore) -> None:
    before = await task_in_status(aggregator, TaskStatus.COMPLETED, "t1")
    with pytest.raises(AlreadyExistsError):
        await aggregator.save_task(make_task("t1", payload=b"different"))
    assert await aggregator.get_task("t1") == before


async def test_task_identical_after_normalisation_is_not_new(aggregator: AggregatorStore) -> None:
    deadline_utc = datetime(2026, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    plus5 = timezone(timedelta(hours=5))
    upper = "0x" + "AB" * 20
    assert await aggregator.save_task(make_task("t1", avs_address=upper, deadline=deadline_utc))
    # lower-case address, and the same instant in another zone
    same = make_task("t1", avs_address=upper.lower(), deadline=deadline_utc.astimezone(plus5))
    assert await aggregator.save_task(same) is False
    # and the other way round, with sub-millisecond noise that truncation removes
    noisy = make_task("t1", avs_address="0X" + "Ab" * 20, deadline=deadline_utc + timedelta(microseconds=999))
    assert await aggregator.save_task(noisy) is False
    assert (await aggregator.get_task("t1")).task.avs_address == AVS_A


async def test_save_tasks_counts_created(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t0"))
    created = await aggregator.save_tasks([make_task("t0"), make_task("t1"), make_task("t2")])
    assert created == 2
    assert ids(await aggregator.list_pending_tasks()) == ["t0", "t1", "t2"]
    for task_id in ("t1", "t2"):
        record = await aggregator.get_task(task_id)
        assert record.status == TaskStatus.PENDING
        assert record.attempts == 0


async def test_save_tasks_empty_batch(aggregator: AggregatorStore) -> None:
    assert await aggregator.save_tasks([]) == 0
    assert await aggregator.list_pending_tasks() == []


async def test_save_tasks_accepts_any_iterable(aggregator: AggregatorStore) -> None:
    created = await aggregator.save_tasks(make_task(f"g{i}") for i in range(3))
    assert created == 3
    assert ids(await aggregator.list_pending_tasks()) == ["g0", "g1", "g2"]


async def test_save_tasks_identical_duplicates_count_once(aggregator: AggregatorStore) -> None:
    created = await aggregator.save_tasks([make_task("t1"), make_task("t2"), make_task("t1")])
    assert created == 2
    assert ids(await aggregator.list_pending_tasks()) == ["t1", "t2"]


async def test_save_tasks_different_duplicates_raise_and_write_nothing(aggregator: AggregatorStore) -> None:
    batch = [make_task("t1"), make_task("t2"), make_task("t1", payload=b"x")]
    with pytest.raises(InvalidInputError):
        await aggregator.save_tasks(batch)
    counts = await aggregator.count_tasks()
    assert sum(counts.values()) == 0
    with pytest.raises(NotFoundError):
        await aggregator.get_task("t2")


async def test_save_tasks_with_an_invalid_task_writes_nothing(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("existing"))
    before = await aggregator.count_tasks()
    batch = [make_task("t1"), make_task("t2", avs_address="0xnothex"), make_task("t3")]
    with pytest.raises(InvalidInputError):
        await aggregator.save_tasks(batch)
    assert await aggregator.count_tasks() == before
    for task_id in ("t1", "t3"):
        with pytest.raises(NotFoundError):
            await aggregator.get_task(task_id)


async def test_save_tasks_with_a_conflicting_task_writes_nothing(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("existing"))
    before = await aggregator.count_tasks()
    batch = [make_task("t1"), make_task("existing", payload=b"different"), make_task("t3")]
    with pytest.raises(AlreadyExistsError):
        await aggregator.save_tasks(batch)
    assert await aggregator.count_tasks() == before
    assert ids(await aggregator.list_pending_tasks()) == ["existing"]


# ---------------------------------------------------------------- get / delete


async def test_get_missing_task_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(NotFoundError):
        await aggregator.get_task("nope")


@pytest.mark.parametrize("status", list(TaskStatus))
async def test_delete_task(aggregator: AggregatorStore, status: TaskStatus) -> None:
    await task_in_status(aggregator, status, "t1")
    await aggregator.save_task(make_task("t2"))
    await aggregator.delete_task("t1")
    with pytest.raises(NotFoundError):
        await aggregator.get_task("t1")
    assert ids(await aggregator.list_pending_tasks()) == ["t2"]
    counts = await aggregator.count_tasks()
    assert counts == {
        TaskStatus.PENDING: 1,
        TaskStatus.PROCESSING: 0,
        TaskStatus.COMPLETED: 0,
        TaskStatus.FAILED: 0,
    }
    # a deleted task is gone from the claim queue and the reaper too
    assert await aggregator.reap_expired_leases() == 0


async def test_delete_missing_task_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(NotFoundError):
        await aggregator.delete_task("nope")


async def test_delete_twice_raises(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    await aggregator.delete_task("t1")
    with pytest.raises(NotFoundError):
        await aggregator.delete_task("t1")


async def test_a_deleted_id_can_be_saved_again(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    await aggregator.delete_task("t1")
    assert await aggregator.save_task(make_task("t1", payload=b"new")) is True
    assert (await aggregator.get_task("t1")).task.payload == b"new"


async def test_a_deleted_processing_task_is_not_claimed_or_reaped(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_task(make_task("t1"))
    await claim_one(aggregator, "t1", lease_s=1)
    await aggregator.delete_task("t1")
    clock.advance(5)
    assert await aggregator.reap_expired_leases() == 0
    assert await aggregator.claim_tasks("w", limit=10, lease_s=5) == []


# ---------------------------------------------------------------- list_pending_tasks


async def test_list_pending_is_fifo_by_save_order(aggregator: AggregatorStore, clock: ManualClock) -> None:
    # ids deliberately not in lexical order
    for task_id in ("m", "z", "a", "k"):
        await aggregator.save_task(make_task(task_id))
        clock.advance(0.001)
    assert ids(await aggregator.list_pending_tasks()) == ["m", "z", "a", "k"]


async def test_list_pending_keeps_batch_order_at_one_instant(aggregator: AggregatorStore) -> None:
    order = ["q", "b", "x", "a", "m", "c", "z", "d"]
    await aggregator.save_tasks([make_task(i) for i in order])
    await aggregator.save_task(make_task("after"))
    assert ids(await aggregator.list_pending_tasks()) == [*order, "after"]


async def test_list_pending_returns_the_normalised_tasks(aggregator: AggregatorStore) -> None:
    upper = "0x" + "AB" * 20
    deadline = datetime(2027, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=3)))
    await aggregator.save_task(make_task("t1", avs_address=upper, deadline=deadline))
    [task] = await aggregator.list_pending_tasks()
    assert task == make_task("t1", avs_address=AVS_A, deadline=datetime(2027, 1, 1, tzinfo=UTC))
    assert task.deadline is not None
    assert task.deadline.utcoffset() == timedelta(0)


async def test_list_pending_only_lists_pending(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(make_tasks(4))
    c0 = await claim_one(aggregator, "task-0000")
    c1 = await claim_one(aggregator, "task-0001")
    await aggregator.complete_task("task-0001", c1.token)
    await claim_one(aggregator, "task-0002")
    assert ids(await aggregator.list_pending_tasks()) == ["task-0003"]
    await aggregator.fail_task("task-0000", c0.token, "x")
    assert ids(await aggregator.list_pending_tasks()) == ["task-0003"]


@pytest.mark.parametrize("how", ["release", "reap", "retry", "override"])
async def test_task_back_to_pending_keeps_its_place(
    aggregator: AggregatorStore, clock: ManualClock, how: str
) -> None:
    await aggregator.save_tasks([make_task("first"), make_task("second")])
    clock.advance(1)
    await aggregator.save_task(make_task("third"))
    claimed = await claim_one(aggregator, "first", lease_s=10)
    assert ids(await aggregator.list_pending_tasks()) == ["second", "third"]
    clock.advance(1)
    await aggregator.save_task(make_task("fourth"))
    if how == "release":
        await aggregator.release_task("first", claimed.token)
    elif how == "reap":
        clock.advance(60)
        assert await aggregator.reap_expired_leases() == 1
    elif how == "retry":
        await aggregator.fail_task("first", claimed.token, "flaky", retry=True)
    else:
        await aggregator.update_task_status("first", TaskStatus.PENDING)
    assert (await aggregator.get_task("first")).status == TaskStatus.PENDING
    assert ids(await aggregator.list_pending_tasks()) == ["first", "second", "third", "fourth"]
    # and the next claim takes it first again
    again = await aggregator.claim_tasks("worker-2", limit=1, lease_s=10)
    assert ids([c.task for c in again]) == ["first"]


async def test_list_pending_limit(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(make_tasks(5))
    assert ids(await aggregator.list_pending_tasks(limit=2)) == ["task-0000", "task-0001"]
    assert ids(await aggregator.list_pending_tasks(limit=1)) == ["task-0000"]
    assert len(await aggregator.list_pending_tasks(limit=5)) == 5
    assert len(await aggregator.list_pending_tasks(limit=50)) == 5
    assert len(await aggregator.list_pending_tasks(limit=None)) == 5
    assert await aggregator.list_pending_tasks(limit=0) == []


async def test_list_pending_negative_limit_raises(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError):
        await aggregator.list_pending_tasks(limit=-1)


async def test_list_pending_filters_by_avs(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(
        [
            make_task("a1", avs_address=AVS_A),
            make_task("b1", avs_address=AVS_B),
            make_task("a2", avs_address=AVS_A.upper().replace("0X", "0x")),
            make_task("b2", avs_address=AVS_B),
            make_task("a3", avs_address=AVS_A),
        ]
    )
    assert ids(await aggregator.list_pending_tasks(AVS_A)) == ["a1", "a2", "a3"]
    assert ids(await aggregator.list_pending_tasks(AVS_B)) == ["b1", "b2"]
    upper_a = "0x" + AVS_A[2:].upper()
    assert ids(await aggregator.list_pending_tasks(upper_a)) == ["a1", "a2", "a3"]
    assert ids(await aggregator.list_pending_tasks("0X" + AVS_B[2:].upper())) == ["b1", "b2"]
    assert ids(await aggregator.list_pending_tasks(avs_address=AVS_A, limit=2)) == ["a1", "a2"]
    assert await aggregator.list_pending_tasks("0x" + "ef" * 20) == []
    # claiming removes from the per-AVS view too
    await claim_one(aggregator, "a1")
    assert ids(await aggregator.list_pending_tasks(AVS_A)) == ["a2", "a3"]


@pytest.mark.parametrize("bad", ["0x1234", "not-an-address", "0x" + "zz" * 20, "ab" * 21, ""])
async def test_list_pending_bad_avs_address_raises(aggregator: AggregatorStore, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.list_pending_tasks(bad)


async def test_list_pending_empty_store(aggregator: AggregatorStore) -> None:
    assert await aggregator.list_pending_tasks() == []
    assert await aggregator.list_pending_tasks(AVS_A) == []


# ---------------------------------------------------------------- count_tasks


async def test_count_tasks_empty_has_every_status(aggregator: AggregatorStore) -> None:
    counts = await aggregator.count_tasks()
    assert set(counts) == set(TaskStatus)
    assert all(counts[s] == 0 for s in TaskStatus)


async def test_count_tasks_follows_transitions(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(make_tasks(6))
    claimed = await aggregator.claim_tasks("w", limit=4, lease_s=30)
    assert len(claimed) == 4
    await aggregator.complete_task(claimed[0].task.task_id, claimed[0].token)
    await aggregator.complete_task(claimed[1].task.task_id, claimed[1].token)
    await aggregator.fail_task(claimed[2].task.task_id, claimed[2].token, "bad")
    counts = await aggregator.count_tasks()
    assert set(counts) == set(TaskStatus)
    assert counts[TaskStatus.PENDING] == 2
    assert counts[TaskStatus.PROCESSING] == 1
    assert counts[TaskStatus.COMPLETED] == 2
    assert counts[TaskStatus.FAILED] == 1


# ---------------------------------------------------------------- trim_finished_tasks


async def test_trim_finished_tasks_after_retention(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(retention_s=100)
    await task_in_status(store, TaskStatus.COMPLETED, "done")
    await task_in_status(store, TaskStatus.FAILED, "failed")
    await task_in_status(store, TaskStatus.PROCESSING, "busy")
    clock.advance(50)
    assert await store.trim_finished_tasks() == 0
    clock.advance(51)
    # a task finished later is kept, and so are unfinished ones
    await task_in_status(store, TaskStatus.COMPLETED, "recent")
    await store.save_task(make_task("waiting"))
    assert await store.trim_finished_tasks() == 2
    for gone in ("done", "failed"):
        with pytest.raises(NotFoundError):
            await store.get_task(gone)
    assert (await store.get_task("busy")).status == TaskStatus.PROCESSING
    assert (await store.get_task("waiting")).status == TaskStatus.PENDING
    assert (await store.get_task("recent")).status == TaskStatus.COMPLETED
    counts = await store.count_tasks()
    assert counts[TaskStatus.COMPLETED] == 1
    assert counts[TaskStatus.FAILED] == 0
    assert await store.trim_finished_tasks() == 0


async def test_trim_finished_tasks_respects_limit(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(retention_s=10)
    await store.save_tasks(make_tasks(3))
    claimed = await store.claim_tasks("w", limit=3, lease_s=30)
    for c in claimed:
        await store.complete_task(c.task.task_id, c.token)
    clock.advance(11)
    assert await store.trim_finished_tasks(limit=2) == 2
    assert (await store.count_tasks())[TaskStatus.COMPLETED] == 1
    assert await store.trim_finished_tasks(limit=2) == 1
    assert (await store.count_tasks())[TaskStatus.COMPLETED] == 0


async def test_trim_uses_the_time_the_task_finished(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(retention_s=100)
    await store.save_task(make_task("t1"))
    clock.advance(90)
    claimed = await claim_one(store, "t1")
    await store.complete_task("t1", claimed.token)
    clock.advance(50)  # 140 s after the save, 50 s after completion
    assert await store.trim_finished_tasks() == 0
    assert (await store.get_task("t1")).status == TaskStatus.COMPLETED


async def test_trim_deletes_the_oldest_first_across_completed_and_failed(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(retention_s=10)
    await task_in_status(store, TaskStatus.FAILED, "old-failed")
    clock.advance(1)
    await task_in_status(store, TaskStatus.COMPLETED, "new-done")
    clock.advance(1)
    await task_in_status(store, TaskStatus.FAILED, "newest-failed")
    clock.advance(20)
    assert await store.trim_finished_tasks(limit=1) == 1
    with pytest.raises(NotFoundError):
        await store.get_task("old-failed")
    assert (await store.get_task("new-done")).status == TaskStatus.COMPLETED
    assert await store.trim_finished_tasks(limit=1) == 1
    with pytest.raises(NotFoundError):
        await store.get_task("new-done")
    assert (await store.get_task("newest-failed")).status == TaskStatus.FAILED


async def test_trim_breaks_ties_by_task_id_across_completed_and_failed(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    """Tasks that finished in the same millisecond go in the order of their ids'
    code points (UTF-8 bytes), whichever status they ended in."""
    store = await make_aggregator(retention_s=10)
    finished = {
        "a": TaskStatus.FAILED,
        "B": TaskStatus.COMPLETED,
        "é": TaskStatus.FAILED,
        "b": TaskStatus.COMPLETED,
        "A": TaskStatus.FAILED,
        "z": TaskStatus.COMPLETED,
        "Ā": TaskStatus.COMPLETED,
    }
    for task_id, status in finished.items():
        await task_in_status(store, status, task_id)
    clock.advance(11)
    trimmed = []
    for _ in finished:
        left = {t for t in finished if await _exists(store, t)}
        assert await store.trim_finished_tasks(limit=1) == 1
        (gone,) = [t for t in left if not await _exists(store, t)]
        trimmed.append(gone)
    assert trimmed == sorted(finished) == ["A", "B", "a", "b", "z", "é", "Ā"]
    assert await store.trim_finished_tasks(limit=1) == 0


async def test_trim_with_a_limit_over_one_batch(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(retention_s=10)
    await store.save_tasks(make_tasks(5))
    for c in await store.claim_tasks("w", limit=5, lease_s=30):
        await store.complete_task(c.task.task_id, c.token)
    clock.advance(11)
    assert await store.trim_finished_tasks(limit=0) == 0
    assert await store.trim_finished_tasks(limit=1_000_000) == 5
    assert (await store.count_tasks())[TaskStatus.COMPLETED] == 0
    assert await store.trim_finished_tasks(limit=1_000_000) == 0


async def _exists(store: AggregatorStore, task_id: str) -> bool:
    try:
        await store.get_task(task_id)
    except NotFoundError:
        return False
    return True
