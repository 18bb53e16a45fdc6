"""fail_orphaned_tasks and try_runner_lease on Redis: the chain task index behind them,
bounded pages, a retried call after a lost reply, and what the keys hold."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from _redis_support import Stores, make_task

from ponos_redis import ManualClock
from ponos_redis.backends import redis as redis_backend
from ponos_redis.backends._common import ORPHAN_BATCH

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]


async def test_save_indexes_each_task_under_its_chain_by_block(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_tasks(
        [make_task("a", chain_id=1, block_number=7), make_task("b", chain_id=17000, block_number=3)]
    )
    assert await raw.zrange(store.keys.chain_tasks(1), 0, -1, withscores=True) == [(b"a", 7.0)]
    assert await raw.zrange(store.keys.chain_tasks(17000), 0, -1, withscores=True) == [(b"b", 3.0)]


async def test_delete_and_trim_drop_the_index_entry(stores: Stores, raw: aioredis.Redis) -> None:
    clock = ManualClock()
    store = await stores.aggregator(clock=clock, tasks={"retention_s": 10})
    await store.save_tasks([make_task("a", block_number=7), make_task("b", block_number=8)])
    await store.delete_task("a")
    [claimed] = await store.claim_tasks("w", limit=1, lease_s=30)
    await store.complete_task("b", claimed.token)
    clock.advance(11)
    assert await store.trim_finished_tasks() == 1
    assert await raw.exists(store.keys.chain_tasks(1)) == 0


async def test_one_script_looks_at_most_at_one_page(
    stores: Stores, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await stores.aggregator()
    n = 2 * ORPHAN_BATCH + 500
    await store.save_tasks([make_task(f"t-{i:05d}", block_number=10 + i) for i in range(n)])
    # index entries whose task hash is gone (deleted by hand) are dropped on the way
    for i in range(0, n, 7):
        await raw.delete(store.keys.task(f"t-{i:05d}"))
    calls: list[int] = []
    original = store._script

    async def spy(name: str, keys: Any, args: Any, **kwargs: Any) -> Any:
        reply = await original(name, keys, args, **kwargs)
        if name == "fail_orphaned":
            calls.append(int(reply[1]))
        return reply

    monkeypatch.setattr(store, "_script", spy)
    failed = await store.fail_orphaned_tasks(1, 9)
    assert failed == [f"t-{i:05d}" for i in range(n) if i % 7]
    assert max(calls) == ORPHAN_BATCH
    assert len(calls) == 3
    assert await raw.zcard(store.keys.chain_tasks(1)) == len(failed)  # failed ones stay in the index


async def test_a_retried_call_reports_what_its_lost_attempt_failed(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry sends the same call id; the tasks it failed before its reply was lost are reported."""
    store = await stores.aggregator()
    await store.save_tasks([make_task(f"t-{i}", block_number=10 + i) for i in range(3)])
    fixed = uuid.UUID(int=42)
    monkeypatch.setattr(redis_backend.uuid, "uuid4", lambda: fixed)
    assert await store.fail_orphaned_tasks(1, 10) == ["t-1", "t-2"]
    tokens = [(await store.get_task(f"t-{i}")).token for i in (1, 2)]
    assert await store.fail_orphaned_tasks(1, 10) == ["t-1", "t-2"]  # the "retry"
    assert [(await store.get_task(f"t-{i}")).token for i in (1, 2)] == tokens  # nothing failed twice
    monkeypatch.undo()
    assert await store.fail_orphaned_tasks(1, 10) == []  # another call


async def test_a_set_aside_task_is_left_for_the_operator(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("bad", block_number=9), make_task("good", block_number=9)])
    await raw.hset(store.keys.task("bad"), "operator_set_id", "oops")
    [claimed] = await store.claim_tasks("w", limit=5, lease_s=30)
    assert claimed.task.task_id == "good"
    assert await raw.zscore(store.keys.set_aside, "bad") is not None
    assert await store.fail_orphaned_tasks(1, 0) == ["good"]
    assert await raw.hget(store.keys.task("bad"), "status") == b"processing"  # as set aside


async def test_the_runner_lease_key_holds_expiry_and_owner_with_a_ttl(
    stores: Stores, raw: aioredis.Redis
) -> None:
    clock = ManualClock()
    store = await stores.aggregator(clock=clock)
    assert await store.try_runner_lease("reaper", "replica-a", ttl_s=30)
    expires_ms = int(clock().timestamp() * 1000) + 30_000
    key = store.keys.runner("reaper")
    assert await raw.get(key) == f"{expires_ms}:replica-a".encode()
    assert 0 < await raw.pttl(key) <= 30_000
