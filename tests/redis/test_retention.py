"""Retention on the real clock (the server's TIME): finished tasks past
``tasks.retention_s`` are deleted with their index entries; others stay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from _redis_support import TIMEOUT_S, Stores, make_task

from ponos_redis import ManualClock, NotFoundError, TaskStatus
from ponos_redis.backends.redis import RedisAggregatorStore

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(30)]

RETENTION_S = 0.2
C, F, P = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING


async def _finish_two_keep_one(store: RedisAggregatorStore) -> None:
    await store.save_tasks([make_task("t-done"), make_task("t-failed"), make_task("t-waiting")])
    claimed = {c.task.task_id: c for c in await store.claim_tasks("replica-a", limit=2, lease_s=30)}
    assert set(claimed) == {"t-done", "t-failed"}
    await store.complete_task("t-done", claimed["t-done"].token)
    await store.fail_task("t-failed", claimed["t-failed"].token, "boom")


async def _until_gone(raw: aioredis.Redis, key: str, trim: Callable[[], Awaitable[int]]) -> int:
    """Call ``trim`` until ``key`` is gone (bounded); the total it reported."""
    await asyncio.sleep(RETENTION_S + 0.1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    total = 0
    while True:
        total += await trim()
        if not await raw.exists(key):
            return total
        if loop.time() > deadline:
            pytest.fail(f"{key} was not trimmed within {TIMEOUT_S} s")
        await asyncio.sleep(0.05)


async def _assert_trimmed(raw: aioredis.Redis, store: RedisAggregatorStore) -> None:
    for task_id, status in (("t-done", C), ("t-failed", F)):
        assert await raw.exists(store.keys.task(task_id)) == 0
        assert await raw.zscore(store.keys.tasks(status), task_id) is None
        with pytest.raises(NotFoundError):
            await store.get_task(task_id)
    # The pending task is untouched.
    assert await raw.exists(store.keys.task("t-waiting")) == 1
    assert await raw.zscore(store.keys.tasks(P), "t-waiting") is not None
    assert (await store.get_task("t-waiting")).status is P
    assert [t.task_id for t in await store.list_pending_tasks()] == ["t-waiting"]
    counts = await store.count_tasks()
    assert counts == {P: 1, TaskStatus.PROCESSING: 0, C: 0, F: 0}


async def test_trim_finished_tasks_after_retention(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator(tasks={"retention_s": RETENTION_S})
    await _finish_two_keep_one(store)
    trimmed = await _until_gone(raw, store.keys.task("t-failed"), store.trim_finished_tasks)
    assert trimmed == 2
    await _assert_trimmed(raw, store)


async def test_reap_expired_leases_also_trims(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator(tasks={"retention_s": RETENTION_S})
    await _finish_two_keep_one(store)

    async def reap() -> int:
        assert await store.reap_expired_leases() == 0  # nothing is leased
        return 0

    # t-done finished before t-failed: once t-failed is gone, so is t-done.
    await _until_gone(raw, store.keys.task("t-failed"), reap)
    await _assert_trimmed(raw, store)


async def test_nothing_is_trimmed_before_its_retention(stores: Stores, raw: aioredis.Redis) -> None:
    long = await stores.aggregator(tasks={"retention_s": 3600})
    await _finish_two_keep_one(long)
    assert await long.trim_finished_tasks() == 0
    assert await long.reap_expired_leases() == 0
    for task_id, status in (("t-done", C), ("t-failed", F)):
        assert await raw.exists(long.keys.task(task_id)) == 1
        assert await raw.zscore(long.keys.tasks(status), task_id) is not None
    # The same namespace seen by a replica with a short retention: its trim decides by its own setting.
    short = await stores.aggregator(tasks={"retention_s": RETENTION_S})
    assert await _until_gone(raw, short.keys.task("t-failed"), short.trim_finished_tasks) == 2
    await _assert_trimmed(raw, short)


async def test_retention_zero_trims_at_once(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator(tasks={"retention_s": 0})
    await _finish_two_keep_one(store)
    assert await _until_gone(raw, store.keys.task("t-failed"), store.trim_finished_tasks) == 2
    await _assert_trimmed(raw, store)


async def test_trim_is_bounded_by_its_limit(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator(tasks={"retention_s": RETENTION_S})
    await store.save_tasks([make_task(f"t-{i}") for i in range(5)])
    for claimed in await store.claim_tasks("replica-a", limit=5, lease_s=30):
        await store.complete_task(claimed.task.task_id, claimed.token)
    await asyncio.sleep(RETENTION_S + 0.1)
    assert await store.trim_finished_tasks(limit=2) == 2
    assert await raw.zcard(store.keys.tasks(C)) == 3
    # Oldest first (ties in the same millisecond go by id): t-0 and t-1 went first.
    assert [await raw.exists(store.keys.task(f"t-{i}")) for i in range(5)] == [0, 0, 1, 1, 1]
    assert await store.trim_finished_tasks(limit=10) == 3
    assert await raw.zcard(store.keys.tasks(C)) == 0
    assert [await raw.exists(store.keys.task(f"t-{i}")) for i in range(5)] == [0] * 5


async def _complete_many(store: RedisAggregatorStore, n: int) -> None:
    """``n`` completed tasks, saved, claimed and completed a chunk at a time."""
    for start in range(0, n, 1000):
        chunk = [make_task(f"t-{i:05d}") for i in range(start, min(n, start + 1000))]
        assert await store.save_tasks(chunk) == len(chunk)
        claimed = await store.claim_tasks("replica-a", limit=len(chunk), lease_s=30)
        assert len(claimed) == len(chunk)
        for at in range(0, len(claimed), 32):
            await asyncio.gather(
                *(store.complete_task(c.task.task_id, c.token) for c in claimed[at : at + 32])
            )


def _count_trim_calls(store: RedisAggregatorStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limit (ARGV[3]) of every trim script the store runs from now on."""
    limits: list[int] = []
    script = store._script

    async def spy(name: str, keys: Any, args: Any, **options: Any) -> Any:
        if name == "trim":
            limits.append(int(args[2]))
        return await script(name, keys, args, **options)

    monkeypatch.setattr(store, "_script", spy)
    return limits


async def test_a_large_trim_runs_in_capped_script_calls(
    stores: Stores, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    store = await stores.aggregator(tasks={"retention_s": 10}, clock=clock)
    await _complete_many(store, 5000)
    clock.advance(11)
    limits = _count_trim_calls(store, monkeypatch)
    assert await store.trim_finished_tasks(limit=4999) == 4999
    assert len(limits) == 5
    assert max(limits) <= 1000
    assert sum(limits) == 4999
    assert await raw.zcard(store.keys.tasks(C)) == 1
    assert await raw.exists(store.keys.task("t-04999")) == 1  # the newest (ties go by id) is kept
    assert await store.trim_finished_tasks(limit=5000) == 1
    assert await store.trim_finished_tasks(limit=5000) == 0
    assert await raw.zcard(store.keys.tasks(C)) == 0


async def test_the_trim_script_caps_its_own_work(stores: Stores, raw: aioredis.Redis) -> None:
    """Asked for more, one trim script still deletes at most 1000 tasks."""
    clock = ManualClock()
    store = await stores.aggregator(tasks={"retention_s": 10}, clock=clock)
    await _complete_many(store, 1500)
    clock.advance(11)
    reply = await store._script(
        "trim", [store.keys.tasks(C), store.keys.tasks(F)], [store._now(), 10_000, 5000, store.keys.prefix]
    )
    assert [int(x) for x in reply[1:]] == [1000, 1000]
    assert await raw.zcard(store.keys.tasks(C)) == 500


async def test_reap_trims_more_than_one_batch_per_call(
    stores: Stores, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    store = await stores.aggregator(tasks={"retention_s": 10}, clock=clock)
    await _complete_many(store, 2500)
    clock.advance(11)
    limits = _count_trim_calls(store, monkeypatch)
    assert await store.reap_expired_leases() == 0
    assert await raw.zcard(store.keys.tasks(C)) == 0
    assert (await store.count_tasks())[C] == 0
    assert max(limits) <= 1000
    assert len(limits) == 3  # 1000 + 1000 + 500: the last came back short, so nothing was left
