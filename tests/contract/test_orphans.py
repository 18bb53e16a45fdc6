"""Reorgs: fail_orphaned_tasks fails a chain's open tasks above a block, fenced by the chain lease."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from _helpers import AggregatorFactory, claim_one, collect_events, last_event_id, make_task, new_events

from ponos_redis import (
    AggregatorStore,
    InvalidInputError,
    ManualClock,
    StaleLeaseError,
    Task,
    TaskRecord,
    TaskStatus,
)

P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED


def task(task_id: str, chain_id: int, block_number: int) -> Task:
    return make_task(task_id, chain_id=chain_id, block_number=block_number)


async def save_reorg_fixture(store: AggregatorStore) -> None:
    """Tasks at blocks 5, 6, 7 of chain 1 and at block 7 of chain 2."""
    assert (
        await store.save_tasks(
            [task("c1-b5", 1, 5), task("c1-b6", 1, 6), task("c1-b7", 1, 7), task("c2-b7", 2, 7)]
        )
        == 4
    )


async def records(store: AggregatorStore, *ids: str) -> dict[str, TaskRecord]:
    return {i: await store.get_task(i) for i in ids}


ALL = ("c1-b5", "c1-b6", "c1-b7", "c2-b7")


async def test_fails_only_the_chains_open_tasks_above_the_block(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await save_reorg_fixture(aggregator)
    before = await records(aggregator, *ALL)
    mark = await last_event_id(aggregator)
    clock.advance(3)

    assert await aggregator.fail_orphaned_tasks(1, 5) == ["c1-b6", "c1-b7"]

    after = await records(aggregator, *ALL)
    for task_id in ("c1-b6", "c1-b7"):
        record = after[task_id]
        assert record.status is F
        assert record.last_error == "reorg"
        assert record.updated_at == clock()
        assert record.lease_until is None
        assert record.token is not None
        assert record.attempts == 0
    assert after["c1-b6"].token is not None
    assert after["c1-b7"].token is not None
    assert after["c1-b6"].token < after["c1-b7"].token  # new tokens, issued in that order
    assert after["c1-b5"] == before["c1-b5"]  # at the block: kept
    assert after["c2-b7"] == before["c2-b7"]  # another chain
    assert [t.task_id for t in await aggregator.list_pending_tasks()] == ["c1-b5", "c2-b7"]
    counts = await aggregator.count_tasks()
    assert (counts[P], counts[F]) == (2, 2)

    events = await new_events(aggregator, mark)
    assert [(e.kind, e.subject, e.status, e.owner) for e in events] == [
        ("task.failed", "c1-b6", "failed", None),
        ("task.failed", "c1-b7", "failed", None),
    ]
    assert [e.token for e in events] == [after["c1-b6"].token, after["c1-b7"].token]


async def test_nothing_above_the_block_fails_nothing(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    mark = await last_event_id(aggregator)
    assert await aggregator.fail_orphaned_tasks(1, 7) == []
    assert await aggregator.fail_orphaned_tasks(3, 0) == []  # a chain without tasks
    assert await new_events(aggregator, mark) == []
    assert (await aggregator.count_tasks())[P] == 4


async def test_keep_leaves_the_named_tasks_alone(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    assert await aggregator.fail_orphaned_tasks(1, 4, keep=["c1-b6", "not-a-task", "c2-b7"]) == [
        "c1-b5",
        "c1-b7",
    ]
    assert (await aggregator.get_task("c1-b6")).status is P
    # keep may be any collection of ids
    assert await aggregator.fail_orphaned_tasks(1, 0, keep={"c1-b6"}) == []
    assert await aggregator.fail_orphaned_tasks(1, 0, keep=frozenset()) == ["c1-b6"]


async def test_a_custom_reason_is_the_last_error(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    assert await aggregator.fail_orphaned_tasks(2, 0, reason="reorg at 0x12: block 7 orphaned") == ["c2-b7"]
    assert (await aggregator.get_task("c2-b7")).last_error == "reorg at 0x12: block 7 orphaned"


async def test_a_claimed_tasks_token_becomes_stale(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    claimed = {c.task.task_id: c for c in await aggregator.claim_tasks("worker-1", limit=4, lease_s=30)}
    mark = await last_event_id(aggregator)

    assert await aggregator.fail_orphaned_tasks(1, 5) == ["c1-b6", "c1-b7"]

    record = await aggregator.get_task("c1-b6")
    assert record.status is F
    assert record.token != claimed["c1-b6"].token
    assert record.lease_until is None
    assert record.attempts == 1
    for call in (
        aggregator.complete_task("c1-b6", claimed["c1-b6"].token),
        aggregator.renew_task_lease("c1-b6", claimed["c1-b6"].token, lease_s=30),
        aggregator.fail_task("c1-b6", claimed["c1-b6"].token, "late"),
        aggregator.release_task("c1-b6", claimed["c1-b6"].token),
    ):
        with pytest.raises(StaleLeaseError):
            await call
    assert await aggregator.get_task("c1-b6") == record
    # the holders of the tasks left alone are unaffected
    await aggregator.complete_task("c1-b5", claimed["c1-b5"].token)
    await aggregator.complete_task("c2-b7", claimed["c2-b7"].token)
    counts = await aggregator.count_tasks()
    assert (counts[R], counts[C], counts[F]) == (0, 2, 2)
    # the event names the holder whose lease was revoked, and the new token
    events = {e.subject: e for e in await new_events(aggregator, mark) if e.kind == "task.failed"}
    assert sorted(events) == ["c1-b6", "c1-b7"]
    assert (events["c1-b6"].owner, events["c1-b6"].token) == ("worker-1", record.token)


async def test_a_pending_tasks_earlier_token_becomes_stale(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(task("t", 1, 9))
    claimed = await claim_one(aggregator, "t")
    await aggregator.release_task("t", claimed.token)
    pending = await aggregator.get_task("t")
    assert await aggregator.fail_orphaned_tasks(1, 8) == ["t"]
    record = await aggregator.get_task("t")
    assert record.status is F
    assert pending.token is not None
    assert record.token is not None
    assert record.token > pending.token
    assert record.owner is None
    assert await aggregator.claim_tasks("worker-2", limit=5, lease_s=30) == []


async def test_finished_tasks_are_left_alone(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    claimed = {c.task.task_id: c for c in await aggregator.claim_tasks("worker-1", limit=4, lease_s=30)}
    await aggregator.complete_task("c1-b6", claimed["c1-b6"].token)
    await aggregator.fail_task("c1-b7", claimed["c1-b7"].token, "boom")
    before = await records(aggregator, *ALL)
    mark = await last_event_id(aggregator)

    assert await aggregator.fail_orphaned_tasks(1, 0) == ["c1-b5"]

    after = await records(aggregator, *ALL)
    assert after["c1-b6"] == before["c1-b6"]
    assert after["c1-b7"] == before["c1-b7"]
    assert after["c1-b7"].last_error == "boom"
    assert [e.subject for e in await new_events(aggregator, mark)] == ["c1-b5"]


async def test_a_repeated_call_fails_nothing_twice(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    assert await aggregator.fail_orphaned_tasks(1, 5) == ["c1-b6", "c1-b7"]
    failed = await records(aggregator, "c1-b6", "c1-b7")
    mark = await last_event_id(aggregator)
    assert await aggregator.fail_orphaned_tasks(1, 5) == []
    assert await records(aggregator, "c1-b6", "c1-b7") == failed
    assert await new_events(aggregator, mark) == []


async def test_tasks_are_failed_in_block_then_id_order(aggregator: AggregatorStore) -> None:
    batch = [task("b", 1, 9), task("a", 1, 9), task("z", 1, 8), task("m", 1, 10), task("Ä", 1, 9)]
    await aggregator.save_tasks(batch)
    assert await aggregator.fail_orphaned_tasks(1, 0) == ["z", "a", "b", "Ä", "m"]


async def test_chains_sharing_digits_never_mix(aggregator: AggregatorStore) -> None:
    chains = [1, 17000, 11155111, 8453, 84532, 10]
    await aggregator.save_tasks([task(f"t-{c}", c, 50) for c in chains])
    assert await aggregator.fail_orphaned_tasks(1, 0) == ["t-1"]
    assert await aggregator.fail_orphaned_tasks(17000, 0) == ["t-17000"]
    assert await aggregator.fail_orphaned_tasks(8453, 0) == ["t-8453"]
    statuses = {c: (await aggregator.get_task(f"t-{c}")).status for c in chains}
    assert statuses == {1: F, 17000: F, 11155111: P, 8453: F, 84532: P, 10: P}


# ---------------------------------------------------------------- the fence


async def test_the_live_lease_token_fences_it(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=30)
    assert lease is not None
    assert await aggregator.fail_orphaned_tasks(1, 5, fence=lease.token) == ["c1-b6", "c1-b7"]


async def _assert_refused_and_unchanged(store: AggregatorStore, **kwargs: Any) -> None:
    before = await records(store, *ALL)
    mark = await last_event_id(store)
    with pytest.raises(StaleLeaseError):
        await store.fail_orphaned_tasks(1, 0, **kwargs)
    assert await records(store, *ALL) == before
    assert await new_events(store, mark) == []


async def test_a_wrong_fence_refuses_and_changes_nothing(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    await _assert_refused_and_unchanged(aggregator, fence=1)  # no lease at all
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=30)
    assert lease is not None
    await _assert_refused_and_unchanged(aggregator, fence=lease.token + 1)
    await _assert_refused_and_unchanged(aggregator, fence=lease.token - 1)
    other = await aggregator.acquire_chain_lease(17000, "poller", ttl_s=30)
    assert other is not None
    await _assert_refused_and_unchanged(aggregator, fence=other.token)  # another chain's lease


async def test_the_fence_of_an_expired_or_released_lease_refuses(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await save_reorg_fixture(aggregator)
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=10)
    assert lease is not None
    clock.advance(10)
    await _assert_refused_and_unchanged(aggregator, fence=lease.token)
    again = await aggregator.acquire_chain_lease(1, "poller", ttl_s=10)
    assert again is not None
    assert again.token > lease.token
    await _assert_refused_and_unchanged(aggregator, fence=lease.token)
    await aggregator.release_chain_lease(again)
    await _assert_refused_and_unchanged(aggregator, fence=again.token)


# ---------------------------------------------------------------- many tasks


async def test_more_than_one_script_page_is_failed_whole(aggregator: AggregatorStore) -> None:
    """1,200 tasks above the block (more than one script looks at), two per block,
    with finished, processing and kept ones among them and tasks of other chains around."""
    batch = [task(f"t-{i:04d}", 1, 10 + i // 2) for i in range(1200)]
    batch += [task(f"low-{i}", 1, i) for i in range(10)]  # at or below the block
    batch += [task(f"other-{i}", 17000, 10 + i) for i in range(5)]
    assert await aggregator.save_tasks(batch) == len(batch)
    claimed = {c.task.task_id: c for c in await aggregator.claim_tasks("worker-1", limit=5, lease_s=60)}
    assert sorted(claimed) == [f"t-{i:04d}" for i in range(5)]
    await aggregator.complete_task("t-0001", claimed["t-0001"].token)
    keep = [f"t-{i:04d}" for i in range(0, 1200, 97)]  # t-0000 (processing) among them

    failed = await aggregator.fail_orphaned_tasks(1, 9, keep=keep)

    expected = [f"t-{i:04d}" for i in range(1200) if i % 97 and i != 1]  # already in (block, id) order
    assert failed == expected
    assert len(failed) == 1200 - len(keep) - 1
    counts = await aggregator.count_tasks()
    assert (counts[P], counts[R], counts[C], counts[F]) == (10 + 5 + len(keep) - 1, 1, 1, len(failed))
    assert (await aggregator.get_task("t-0000")).token == claimed["t-0000"].token
    with pytest.raises(StaleLeaseError):
        await aggregator.complete_task("t-0002", claimed["t-0002"].token)
    assert await aggregator.fail_orphaned_tasks(1, 9, keep=keep) == []
    assert await aggregator.fail_orphaned_tasks(1, 9) == keep


async def test_all_of_a_large_range_is_failed_without_keep(aggregator: AggregatorStore) -> None:
    assert await aggregator.save_tasks([task(f"t-{i:04d}", 1, 100 + i) for i in range(2001)]) == 2001
    failed = await aggregator.fail_orphaned_tasks(1, 99)
    assert failed == [f"t-{i:04d}" for i in range(2001)]
    assert (await aggregator.count_tasks())[F] == 2001


# ---------------------------------------------------------------- index upkeep


async def test_a_deleted_task_leaves_its_chain(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    await aggregator.delete_task("c1-b6")
    await aggregator.save_task(task("c1-b6", 2, 6))  # the id again, on another chain
    assert await aggregator.fail_orphaned_tasks(1, 0) == ["c1-b5", "c1-b7"]
    assert (await aggregator.get_task("c1-b6")).status is P
    assert await aggregator.fail_orphaned_tasks(2, 0) == ["c1-b6", "c2-b7"]


async def test_a_trimmed_task_leaves_its_chain(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(retention_s=10)
    await store.save_task(task("t", 1, 6))
    claimed = await claim_one(store, "t")
    await store.complete_task("t", claimed.token)
    clock.advance(11)
    assert await store.trim_finished_tasks() == 1
    await store.save_task(task("t", 2, 6))
    assert await store.fail_orphaned_tasks(1, 0) == []
    assert (await store.get_task("t")).status is P
    assert await store.fail_orphaned_tasks(2, 0) == ["t"]


async def test_replicas_share_it(make_aggregator: AggregatorFactory) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    await save_reorg_fixture(a)
    [claimed] = await b.claim_tasks("replica-b", limit=1, lease_s=30)
    assert await a.fail_orphaned_tasks(1, 4) == ["c1-b5", "c1-b6", "c1-b7"]
    with pytest.raises(StaleLeaseError):
        await b.complete_task(claimed.task.task_id, claimed.token)
    events = await collect_events(b)
    assert sum(e.kind == "task.failed" for e in events) == 3


# ---------------------------------------------------------------- validation


BAD_CALLS = [
    pytest.param({"chain_id": -1}, id="negative-chain"),
    pytest.param({"chain_id": "1"}, id="str-chain"),
    pytest.param({"chain_id": True}, id="bool-chain"),
    pytest.param({"chain_id": 2**53}, id="huge-chain"),
    pytest.param({"above_block": -1}, id="negative-block"),
    pytest.param({"above_block": 1.0}, id="float-block"),
    pytest.param({"above_block": None}, id="none-block"),
    pytest.param({"keep": "c1-b6"}, id="keep-str"),
    pytest.param({"keep": b"c1-b6"}, id="keep-bytes"),
    pytest.param({"keep": 5}, id="keep-int"),
    pytest.param({"keep": None}, id="keep-none"),
    pytest.param({"keep": ["ok", ""]}, id="keep-empty-id"),
    pytest.param({"keep": ["a b"]}, id="keep-space"),
    pytest.param({"keep": ["x" * 257]}, id="keep-long-id"),
    pytest.param({"keep": ["x\ud800"]}, id="keep-surrogate"),
    pytest.param({"keep": [7]}, id="keep-int-id"),
    pytest.param({"keep": [f"k{i}" for i in range(10_001)]}, id="keep-10001"),
    pytest.param({"reason": None}, id="reason-none"),
    pytest.param({"reason": 5}, id="reason-int"),
    pytest.param({"reason": "x\ud800"}, id="reason-surrogate"),
    pytest.param({"reason": "x" * 4097}, id="reason-long"),
    pytest.param({"fence": -1}, id="fence-negative"),
    pytest.param({"fence": 1.0}, id="fence-float"),
    pytest.param({"fence": True}, id="fence-bool"),
    pytest.param({"fence": "1"}, id="fence-str"),
]


@pytest.mark.parametrize("bad", BAD_CALLS)
async def test_bad_arguments_raise_and_write_nothing(
    aggregator: AggregatorStore, bad: dict[str, Any]
) -> None:
    await save_reorg_fixture(aggregator)
    before = await records(aggregator, *ALL)
    mark = await last_event_id(aggregator)
    args: dict[str, Any] = {"chain_id": 1, "above_block": 0, **bad}
    chain_id, above_block = args.pop("chain_id"), args.pop("above_block")
    with pytest.raises(InvalidInputError):
        await aggregator.fail_orphaned_tasks(chain_id, above_block, **args)
    assert await records(aggregator, *ALL) == before
    assert await new_events(aggregator, mark) == []


async def test_ten_thousand_ids_to_keep_are_accepted(aggregator: AggregatorStore) -> None:
    await save_reorg_fixture(aggregator)
    keep = [f"k-{i}" for i in range(9_999)] + ["c1-b7"]
    assert await aggregator.fail_orphaned_tasks(1, 0, keep=keep) == ["c1-b5", "c1-b6"]
    # duplicates count toward the bound but are kept once
    assert await aggregator.fail_orphaned_tasks(1, 0, keep=["c1-b7"] * 10_000) == []


async def test_the_boundaries_of_the_block_range(aggregator: AggregatorStore) -> None:
    top = 2**53 - 1
    await aggregator.save_tasks([task("zero", 1, 0), task("top", 1, top)])
    assert await aggregator.fail_orphaned_tasks(1, top) == []
    assert await aggregator.fail_orphaned_tasks(1, top - 1) == ["top"]
    assert await aggregator.fail_orphaned_tasks(1, 0) == []
    assert (await aggregator.get_task("zero")).status is P


async def test_a_deadline_does_not_matter(aggregator: AggregatorStore, clock: ManualClock) -> None:
    await aggregator.save_task(
        make_task("d", chain_id=1, block_number=9, deadline=clock() + timedelta(seconds=5))
    )
    clock.advance(60)
    assert await aggregator.fail_orphaned_tasks(1, 0) == ["d"]
    assert (await aggregator.get_task("d")).last_error == "reorg"
