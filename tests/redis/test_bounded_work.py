"""Every script does bounded work whatever the caller asks, a large call is split
into several scripts without stranding anything, and an idle poll writes nothing
(lesson 17), with the default configuration."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from _redis_support import Stores, make_task, make_tasks

from ponos_redis import AlreadyExistsError, ManualClock, TaskStatus
from ponos_redis.backends._common import CLAIM_BATCH, SAVE_BATCH
from ponos_redis.backends.redis import RedisAggregatorStore

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]


class ScriptSpy:
    """Counts the scripts a store runs, by name (wraps the store's one script call)."""

    def __init__(self, store: RedisAggregatorStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        original = store._script

        async def spy(name: str, keys: Any, args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, len(keys)))
            return await original(name, keys, args, **kwargs)

        monkeypatch.setattr(store, "_script", spy)

    def count(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)


async def _writes(raw: aioredis.Redis) -> int:
    """The server's count of changes since the last save: it moves with every write."""
    info = await raw.info("persistence")
    return int(info["rdb_changes_since_last_save"])


async def test_a_claim_of_10000_returns_every_task_it_claimed(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await stores.aggregator()
    assert await store.save_tasks(make_tasks(10_000)) == 10_000
    spy = ScriptSpy(store, monkeypatch)
    claimed = await store.claim_tasks("r1", limit=10_000, lease_s=600)
    assert len(claimed) == 10_000
    assert len({c.token for c in claimed}) == 10_000
    assert [c.task.task_id for c in claimed] == [t.task_id for t in make_tasks(10_000)]  # oldest first
    assert spy.count("claim") == 10_000 // CLAIM_BATCH
    counts = await store.count_tasks()
    assert counts[TaskStatus.PROCESSING] == 10_000
    assert counts[TaskStatus.PENDING] == 0
    # every token handed back is the task's current one
    for c in claimed[:: CLAIM_BATCH // 2]:
        await store.complete_task(c.task.task_id, c.token)


async def test_claim_returns_what_earlier_scripts_claimed_when_a_later_one_fails(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim never strands what it claimed: the tasks of the calls before a failure
    are returned with their tokens, and the failed call claimed nothing."""
    store = await stores.aggregator()
    await store.save_tasks(make_tasks(3 * CLAIM_BATCH))
    original = store._script
    runs = 0

    async def second_claim_fails(name: str, keys: Any, args: Any, **kwargs: Any) -> Any:
        nonlocal runs
        if name == "claim":
            runs += 1
            if runs == 2:
                from ponos_redis import StoreUnavailableError

                raise StoreUnavailableError("claim: Redis unavailable (injected)")
        return await original(name, keys, args, **kwargs)

    monkeypatch.setattr(store, "_script", second_claim_fails)
    claimed = await store.claim_tasks("r1", limit=3 * CLAIM_BATCH, lease_s=600)
    assert len(claimed) == CLAIM_BATCH
    counts = await store.count_tasks()
    assert counts[TaskStatus.PROCESSING] == CLAIM_BATCH
    for c in claimed[:10]:
        await store.complete_task(c.task.task_id, c.token)


async def test_deadline_failures_during_a_claim_are_bounded_per_call(stores: Stores) -> None:
    clock = ManualClock()
    store = await stores.aggregator(clock=clock)
    soon = clock() + timedelta(seconds=1)
    expired = [make_task(f"late-{i:05d}", deadline=soon) for i in range(2500)]
    await store.save_tasks([*expired, make_task("on-time")])
    clock.advance(10)
    first = await store.claim_tasks("r1", limit=1, lease_s=30)
    assert first == []  # the bound stopped it before it reached the task on time
    counts = await store.count_tasks()
    assert counts[TaskStatus.FAILED] == 1000
    assert counts[TaskStatus.PENDING] == 1501
    # the next calls go on where it stopped
    claimed = []
    for _ in range(5):
        claimed = await store.claim_tasks("r1", limit=1, lease_s=30)
        if claimed:
            break
    assert [c.task.task_id for c in claimed] == ["on-time"]
    assert (await store.count_tasks())[TaskStatus.FAILED] == 2500


async def test_save_tasks_splits_a_large_batch_into_bounded_scripts(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await stores.aggregator()
    spy = ScriptSpy(store, monkeypatch)
    assert await store.save_tasks(make_tasks(5000)) == 5000
    saves = [keys for name, keys in spy.calls if name == "save"]
    assert len(saves) == 5000 // SAVE_BATCH
    assert max(saves) <= 3 + 3 * SAVE_BATCH + 1  # fixed keys, three per task, the meta guard
    assert (await store.count_tasks())[TaskStatus.PENDING] == 5000
    assert await store.save_tasks(make_tasks(5000)) == 0  # identical: skipped


async def test_a_conflict_in_a_later_chunk_refuses_the_whole_batch(stores: Stores) -> None:
    store = await stores.aggregator()
    batch = make_tasks(3 * SAVE_BATCH)
    await store.save_task(make_task(batch[-1].task_id, block_number=999))  # same id, other fields
    with pytest.raises(AlreadyExistsError):
        await store.save_tasks(batch)
    assert (await store.count_tasks())[TaskStatus.PENDING] == 1


async def test_the_claim_script_bounds_its_work_whatever_it_is_asked(
    stores: Stores, raw: aioredis.Redis
) -> None:
    """Called directly with a limit of 5000, one claim script claims at most 500."""
    store = await stores.aggregator()
    await store.save_tasks(make_tasks(2 * CLAIM_BATCH))
    reply = await store._script(
        "claim",
        [
            store.keys.tasks(TaskStatus.PENDING),
            store.keys.tasks(TaskStatus.PROCESSING),
            store.keys.tasks(TaskStatus.FAILED),
            store.keys.fence,
            store.keys.events,
            store.keys.claim("direct"),
            store.keys.set_aside,
        ],
        ["", "r1", 5000, 30_000, 1000, store.keys.prefix, "deadline exceeded"],
    )
    assert len(reply) - 3 == CLAIM_BATCH
    assert await raw.zcard(store.keys.tasks(TaskStatus.PROCESSING)) == CLAIM_BATCH


async def test_an_empty_claim_writes_nothing(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_task(make_task("t-1"))
    [held] = await store.claim_tasks("r1", limit=1, lease_s=3600)
    before = await _writes(raw)
    for _ in range(200):
        assert await store.claim_tasks("r2", limit=10, lease_s=3600) == []
    assert await store.reap_expired_leases() == 0
    assert await _writes(raw) == before
    claim_keys = [k async for k in raw.scan_iter(match=store.keys.claim("*"))]
    assert len(claim_keys) == 1  # the one claim that got something
    await store.complete_task("t-1", held.token)
