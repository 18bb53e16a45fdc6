"""Task leases: claim, renew, complete, fail, retry, release, reap, fencing."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from _helpers import START, AggregatorFactory, claim_one, make_task, make_tasks

from ponos_redis import (
    AggregatorStore,
    InvalidInputError,
    ManualClock,
    StaleLeaseError,
    TaskStatus,
)

P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED


# ---------------------------------------------------------------- claim


async def test_claim_gives_a_lease(aggregator: AggregatorStore, clock: ManualClock) -> None:
    task = make_task("t1")
    await aggregator.save_task(task)
    clock.advance(7)
    now = clock()
    [claimed] = await aggregator.claim_tasks("worker-1", limit=5, lease_s=30)
    assert claimed.task == task
    assert claimed.attempt == 1
    assert claimed.lease_until == now + timedelta(seconds=30)
    record = await aggregator.get_task("t1")
    assert record.status == R
    assert record.attempts == 1
    assert record.owner == "worker-1"
    assert record.token == claimed.token
    assert record.lease_until == claimed.lease_until
    assert record.updated_at == now
    assert record.created_at == START
    assert record.last_error is None


async def test_claim_fractional_lease(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    [claimed] = await aggregator.claim_tasks("w", limit=1, lease_s=1.5)
    assert claimed.lease_until == START + timedelta(seconds=1.5)


async def test_claim_takes_oldest_first_up_to_limit(aggregator: AggregatorStore, clock: ManualClock) -> None:
    for task_id in ("c", "a", "d", "b", "e"):
        await aggregator.save_task(make_task(task_id))
        clock.advance(1)
    first = await aggregator.claim_tasks("w1", limit=2, lease_s=30)
    assert [c.task.task_id for c in first] == ["c", "a"]
    second = await aggregator.claim_tasks("w2", limit=2, lease_s=30)
    assert [c.task.task_id for c in second] == ["d", "b"]
    third = await aggregator.claim_tasks("w3", limit=10, lease_s=30)
    assert [c.task.task_id for c in third] == ["e"]
    assert await aggregator.claim_tasks("w4", limit=10, lease_s=30) == []
    assert (await aggregator.get_task("d")).owner == "w2"
    tokens = [c.token for c in [*first, *second, *third]]
    assert len(set(tokens)) == len(tokens)


async def test_claim_with_limit_zero_takes_nothing(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    assert await aggregator.claim_tasks("w", limit=0, lease_s=30) == []
    assert (await aggregator.get_task("t1")).status == P


async def test_claim_from_empty_store(aggregator: AggregatorStore) -> None:
    assert await aggregator.claim_tasks("w", limit=10, lease_s=30) == []


@pytest.mark.parametrize("lease_s", [0, -1, math.inf, math.nan, -math.inf])
async def test_claim_bad_lease_raises(aggregator: AggregatorStore, lease_s: float) -> None:
    await aggregator.save_task(make_task("t1"))
    before = await aggregator.get_task("t1")
    with pytest.raises(InvalidInputError):
        await aggregator.claim_tasks("w", limit=1, lease_s=lease_s)
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize("owner", ["", " w", "w\tx", "w\n", "x" * 257, None, 7])
async def test_claim_bad_owner_raises(aggregator: AggregatorStore, owner: object) -> None:
    await aggregator.save_task(make_task("t1"))
    before = await aggregator.get_task("t1")
    with pytest.raises(InvalidInputError):
        await aggregator.claim_tasks(owner, limit=1, lease_s=30)  # type: ignore[arg-type]
    assert await aggregator.get_task("t1") == before


async def test_claim_negative_limit_raises(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError):
        await aggregator.claim_tasks("w", limit=-1, lease_s=30)
    assert (await aggregator.get_task("t1")).status == P


async def test_claim_non_ascii_owner(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    await aggregator.claim_tasks("ワーカー-1", limit=1, lease_s=30)
    assert (await aggregator.get_task("t1")).owner == "ワーカー-1"


async def test_attempts_count_claims(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    for attempt in (1, 2, 3):
        claimed = await claim_one(aggregator, "t1")
        assert claimed.attempt == attempt
        assert (await aggregator.get_task("t1")).attempts == attempt
        await aggregator.release_task("t1", claimed.token)
        assert (await aggregator.get_task("t1")).attempts == attempt


# ---------------------------------------------------------------- deadline at claim


async def test_claim_fails_tasks_past_their_deadline(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_tasks(
        [
            make_task("late", deadline=START + timedelta(seconds=5)),
            make_task("on-the-dot", deadline=START + timedelta(seconds=10)),
            make_task("ok-1", deadline=START + timedelta(seconds=10, milliseconds=1)),
            make_task("ok-2"),
            make_task("ok-3", deadline=START + timedelta(days=1)),
        ]
    )
    clock.advance(10)
    claimed = await aggregator.claim_tasks("w", limit=2, lease_s=30)
    # the expired ones do not count toward the limit
    assert [c.task.task_id for c in claimed] == ["ok-1", "ok-2"]
    for task_id in ("late", "on-the-dot"):
        record = await aggregator.get_task(task_id)
        assert record.status == F
        assert record.last_error == "deadline exceeded"
        assert record.owner is None
        assert record.lease_until is None
    assert [t.task_id for t in await aggregator.list_pending_tasks()] == ["ok-3"]
    counts = await aggregator.count_tasks()
    assert counts[F] == 2
    assert counts[R] == 2


async def test_claim_with_only_expired_tasks_returns_nothing(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_tasks(make_tasks(3, deadline=START + timedelta(seconds=1)))
    clock.advance(2)
    assert await aggregator.claim_tasks("w", limit=1, lease_s=30) == []
    assert (await aggregator.count_tasks())[F] == 3


async def test_deadline_is_judged_at_claim_time_only(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1", deadline=START + timedelta(seconds=10)))
    claimed = await claim_one(aggregator, "t1", lease_s=60)
    clock.advance(20)
    # past its deadline, but already claimed: the holder may still finish it
    await aggregator.complete_task("t1", claimed.token)
    assert (await aggregator.get_task("t1")).status == C


async def test_a_past_deadline_task_returned_to_pending_fails_at_next_claim(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_task(make_task("t1", deadline=START + timedelta(seconds=10)))
    claimed = await claim_one(aggregator, "t1", lease_s=60)
    clock.advance(20)
    await aggregator.release_task("t1", claimed.token)
    assert await aggregator.claim_tasks("w", limit=1, lease_s=30) == []
    record = await aggregator.get_task("t1")
    assert record.status == F
    assert record.last_error == "deadline exceeded"


# ---------------------------------------------------------------- renew


async def test_renew_moves_the_lease_and_keeps_the_token(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1", lease_s=10)
    clock.advance(8)
    await aggregator.renew_task_lease("t1", claimed.token, lease_s=10)
    record = await aggregator.get_task("t1")
    assert record.status == R
    assert record.token == claimed.token
    assert record.owner == "worker-1"
    assert record.attempts == 1
    assert record.lease_until == START + timedelta(seconds=18)
    clock.advance(5)  # t=13: past the first lease, inside the renewed one
    assert await aggregator.reap_expired_leases() == 0
    assert (await aggregator.get_task("t1")).status == R
    clock.advance(6)  # t=19
    assert await aggregator.reap_expired_leases() == 1


async def test_renew_can_shorten_the_lease(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1", lease_s=100)
    await aggregator.renew_task_lease("t1", claimed.token, lease_s=1)
    assert (await aggregator.get_task("t1")).lease_until == START + timedelta(seconds=1)


async def test_expired_but_unreaped_holder_can_renew_and_complete(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1", lease_s=5)
    clock.advance(60)
    await aggregator.renew_task_lease("t1", claimed.token, lease_s=5)
    assert (await aggregator.get_task("t1")).lease_until == START + timedelta(seconds=65)
    clock.advance(60)
    await aggregator.complete_task("t1", claimed.token)
    record = await aggregator.get_task("t1")
    assert record.status == C
    assert await aggregator.reap_expired_leases() == 0


@pytest.mark.parametrize("lease_s", [0, -5, math.inf, math.nan])
async def test_renew_bad_lease_raises(aggregator: AggregatorStore, lease_s: float) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    before = await aggregator.get_task("t1")
    with pytest.raises(InvalidInputError):
        await aggregator.renew_task_lease("t1", claimed.token, lease_s=lease_s)
    assert await aggregator.get_task("t1") == before


# ---------------------------------------------------------------- complete / fail / release


async def test_complete(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1", owner="w-9")
    clock.advance(3)
    await aggregator.complete_task("t1", claimed.token)
    record = await aggregator.get_task("t1")
    assert record.status == C
    assert record.owner == "w-9"
    assert record.token == claimed.token
    assert record.lease_until is None
    assert record.attempts == 1
    assert record.updated_at == START + timedelta(seconds=3)
    assert record.last_error is None
    # replaying with the same token changes nothing, even later
    clock.advance(3)
    await aggregator.complete_task("t1", claimed.token)
    assert await aggregator.get_task("t1") == record


async def test_fail_without_retry(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    clock.advance(2)
    await aggregator.fail_task("t1", claimed.token, "operator quorum not reached")
    record = await aggregator.get_task("t1")
    assert record.status == F
    assert record.last_error == "operator quorum not reached"
    assert record.token == claimed.token
    assert record.lease_until is None
    assert record.updated_at == START + timedelta(seconds=2)
    clock.advance(2)
    await aggregator.fail_task("t1", claimed.token, "operator quorum not reached")
    assert await aggregator.get_task("t1") == record
    # a replay, even with another reason, is a no-op
    await aggregator.fail_task("t1", claimed.token, "something else")
    assert await aggregator.get_task("t1") == record


async def test_fail_with_retry_goes_back_to_pending(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    clock.advance(2)
    await aggregator.fail_task("t1", claimed.token, "rpc timeout", retry=True)
    record = await aggregator.get_task("t1")
    assert record.status == P
    assert record.owner is None
    assert record.lease_until is None
    assert record.last_error == "rpc timeout"
    assert record.attempts == 1
    assert record.token is not None
    assert record.token > claimed.token
    assert record.updated_at == START + timedelta(seconds=2)
    with pytest.raises(StaleLeaseError):
        await aggregator.complete_task("t1", claimed.token)
    assert await aggregator.get_task("t1") == record
    again = await claim_one(aggregator, "t1")
    assert again.attempt == 2


async def test_retry_after_max_attempts_fails(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator(max_attempts=3)
    await store.save_task(make_task("t1"))
    for attempt in (1, 2):
        claimed = await claim_one(store, "t1")
        assert claimed.attempt == attempt
        await store.fail_task("t1", claimed.token, f"flaky {attempt}", retry=True)
        assert (await store.get_task("t1")).status == P
    claimed = await claim_one(store, "t1")
    assert claimed.attempt == 3
    await store.fail_task("t1", claimed.token, "flaky 3", retry=True)
    record = await store.get_task("t1")
    assert record.status == F
    assert record.attempts == 3
    assert record.last_error is not None
    assert "flaky 3" in record.last_error
    assert await store.claim_tasks("w", limit=1, lease_s=30) == []


async def test_max_attempts_one_means_no_retry(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator(max_attempts=1)
    await store.save_task(make_task("t1"))
    claimed = await claim_one(store, "t1")
    await store.fail_task("t1", claimed.token, "once", retry=True)
    assert (await store.get_task("t1")).status == F


async def test_release(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    clock.advance(1)
    await aggregator.release_task("t1", claimed.token)
    record = await aggregator.get_task("t1")
    assert record.status == P
    assert record.owner is None
    assert record.lease_until is None
    assert record.attempts == 1
    assert record.token is not None
    assert record.token > claimed.token
    assert record.updated_at == START + timedelta(seconds=1)
    with pytest.raises(StaleLeaseError):
        await aggregator.release_task("t1", claimed.token)
    assert await aggregator.get_task("t1") == record


# ---------------------------------------------------------------- reap


async def test_reap_expired_leases(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_tasks(make_tasks(3))
    short = await claim_one(aggregator, "task-0000", lease_s=10)
    short2 = await claim_one(aggregator, "task-0001", lease_s=10)
    await claim_one(aggregator, "task-0002", lease_s=100)
    clock.advance(9.999)
    assert await aggregator.reap_expired_leases() == 0
    clock.advance(0.001)  # exactly at lease_until: expired
    assert await aggregator.reap_expired_leases() == 2
    assert await aggregator.reap_expired_leases() == 0
    for claimed in (short, short2):
        record = await aggregator.get_task(claimed.task.task_id)
        assert record.status == P
        assert record.owner is None
        assert record.lease_until is None
        assert record.attempts == 1
        assert record.token is not None
        assert record.token > claimed.token
        assert record.updated_at == START + timedelta(seconds=10)
    assert (await aggregator.get_task("task-0002")).status == R
    assert [t.task_id for t in await aggregator.list_pending_tasks()] == ["task-0000", "task-0001"]


async def test_reaped_holder_is_fenced_out(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(make_task("t1"))
    old = await claim_one(aggregator, "t1", owner="slow", lease_s=5)
    clock.advance(6)
    assert await aggregator.reap_expired_leases() == 1
    new = await claim_one(aggregator, "t1", owner="fast", lease_s=30)
    assert new.token > old.token
    assert new.attempt == 2
    before = await aggregator.get_task("t1")
    with pytest.raises(StaleLeaseError):
        await aggregator.renew_task_lease("t1", old.token, lease_s=30)
    with pytest.raises(StaleLeaseError):
        await aggregator.complete_task("t1", old.token)
    with pytest.raises(StaleLeaseError):
        await aggregator.fail_task("t1", old.token, "late")
    with pytest.raises(StaleLeaseError):
        await aggregator.fail_task("t1", old.token, "late", retry=True)
    with pytest.raises(StaleLeaseError):
        await aggregator.release_task("t1", old.token)
    assert await aggregator.get_task("t1") == before
    await aggregator.complete_task("t1", new.token)
    record = await aggregator.get_task("t1")
    assert record.status == C
    assert record.owner == "fast"


async def test_reap_after_max_attempts_fails_the_task(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(max_attempts=2)
    await store.save_task(make_task("t1"))
    await claim_one(store, "t1", lease_s=5)
    clock.advance(5)
    assert await store.reap_expired_leases() == 1
    assert (await store.get_task("t1")).status == P
    second = await claim_one(store, "t1", lease_s=5)
    assert second.attempt == 2
    clock.advance(5)
    assert await store.reap_expired_leases() == 1
    record = await store.get_task("t1")
    assert record.status == F
    assert record.attempts == 2
    assert record.lease_until is None
    assert record.token is not None
    assert record.token > second.token
    assert record.last_error is not None
    assert "lease" in record.last_error.lower()
    assert await store.claim_tasks("w", limit=1, lease_s=5) == []
    assert await store.reap_expired_leases() == 0


async def test_reap_on_empty_store(aggregator: AggregatorStore) -> None:
    assert await aggregator.reap_expired_leases() == 0


async def test_reap_many(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_tasks(make_tasks(50))
    claimed = await aggregator.claim_tasks("w", limit=50, lease_s=1)
    assert len(claimed) == 50
    clock.advance(1)
    assert await aggregator.reap_expired_leases() == 50
    assert len(await aggregator.list_pending_tasks()) == 50


# ---------------------------------------------------------------- fencing tokens


async def test_tokens_only_grow_across_the_namespace(make_aggregator: AggregatorFactory) -> None:
    a = await make_aggregator()
    b = await make_aggregator()  # a replica sharing the namespace
    await a.save_tasks(make_tasks(4))
    issued: list[int] = []
    c1 = await claim_one(a, "task-0000")
    issued.append(c1.token)
    lease = await b.acquire_chain_lease(1, "poller", ttl_s=30)
    assert lease is not None
    issued.append(lease.token)
    c2 = await claim_one(b, "task-0001")
    issued.append(c2.token)
    await a.release_task("task-0000", c1.token)
    released = (await b.get_task("task-0000")).token
    assert released is not None
    issued.append(released)
    lease2 = await a.acquire_chain_lease(17000, "poller", ttl_s=30)
    assert lease2 is not None
    issued.append(lease2.token)
    await b.update_task_status("task-0002", TaskStatus.PROCESSING)
    manual = (await a.get_task("task-0002")).token
    assert manual is not None
    issued.append(manual)
    c3 = await a.claim_tasks("w", limit=2, lease_s=30)
    issued.extend(c.token for c in c3)
    assert issued == sorted(issued)
    assert len(set(issued)) == len(issued)


async def test_a_claim_larger_than_one_script_returns_every_task(aggregator: AggregatorStore) -> None:
    await aggregator.save_tasks(make_tasks(1234))
    claimed = await aggregator.claim_tasks("r1", limit=10_000, lease_s=600)
    assert [c.task.task_id for c in claimed] == [t.task_id for t in make_tasks(1234)]
    assert len({c.token for c in claimed}) == 1234
    counts = await aggregator.count_tasks()
    assert counts[TaskStatus.PROCESSING] == 1234
    assert counts[TaskStatus.PENDING] == 0


async def test_tokens_are_never_below_the_clock_in_microseconds(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    """The token floor that keeps tokens from repeating after Redis lost data."""
    await aggregator.save_tasks(make_tasks(2))
    [first] = await aggregator.claim_tasks("r1", limit=1, lease_s=30)
    assert first.token >= int(clock().timestamp()) * 1_000_000
    clock.advance(5)
    [second] = await aggregator.claim_tasks("r1", limit=1, lease_s=30)
    assert second.token >= int(clock().timestamp()) * 1_000_000 > first.token
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=10)
    assert lease is not None
    assert lease.token > second.token


async def test_deadline_failures_of_one_claim_are_bounded(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    """One claim looks at most at 1000 pending entries per script; a call that meets that
    many expired deadlines ends there, and the next call goes on."""
    soon = clock() + timedelta(seconds=1)
    await aggregator.save_tasks([*make_tasks(1500, prefix="late", deadline=soon), make_task("on-time")])
    clock.advance(10)
    assert await aggregator.claim_tasks("r1", limit=1, lease_s=30) == []
    counts = await aggregator.count_tasks()
    assert (counts[TaskStatus.FAILED], counts[TaskStatus.PENDING]) == (1000, 501)
    [claimed] = await aggregator.claim_tasks("r1", limit=1, lease_s=30)
    assert claimed.task.task_id == "on-time"
    assert (await aggregator.count_tasks())[TaskStatus.FAILED] == 1500
