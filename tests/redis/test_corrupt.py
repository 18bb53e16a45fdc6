"""A record edited by hand into something that does not decode raises
CorruptRecordError naming its key; the other records stay readable."""

from __future__ import annotations

import contextlib

import pytest
import redis.asyncio as aioredis
from _redis_support import AVS, Stores, make_performer, make_task

from ponos_redis import (
    AvsConfig,
    CorruptRecordError,
    CurveType,
    Deployment,
    ManualClock,
    PonosStorageError,
    TaskStatus,
)

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(30)]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("hset", "attempts", "abc"), "attempts"),
        (("hdel", "created_at"), "created_at"),
        (("hset", "status", "bogus"), "status"),
        (("hdel", "status"), "status"),
        (("hset", "chain_id", "1.5"), "chain_id"),
        (("hset", "deadline", "tomorrow"), "deadline"),
        (("hset", "token", "x"), "token"),
        (("hset", "updated_at", ""), "updated_at"),
        (("hdel", "task_id"), "task_id"),
    ],
    ids=lambda x: x if isinstance(x, str) else "-".join(x),
)
async def test_corrupt_task_names_its_key(
    stores: Stores, raw: aioredis.Redis, edit: tuple[str, ...], field: str
) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-bad"), make_task("t-good")])
    await store.claim_tasks("replica-a", limit=1, lease_s=30)  # t-bad: processing, with a token
    key = store.keys.task("t-bad")
    command, *args = edit
    await getattr(raw, command)(key, *args)

    with pytest.raises(CorruptRecordError) as info:
        await store.get_task("t-bad")
    assert info.value.key == key
    assert field in str(info.value)
    assert key in str(info.value)

    good = await store.get_task("t-good")
    assert good.status is TaskStatus.PENDING
    assert [t.task_id for t in await store.list_pending_tasks()] == ["t-good"]


async def test_several_corrupt_tasks_each_name_their_own_key(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task(f"t-{i}") for i in range(4)])
    await raw.hset(store.keys.task("t-0"), "attempts", "abc")
    await raw.hdel(store.keys.task("t-1"), "created_at")
    await raw.hset(store.keys.task("t-2"), "status", "bogus")
    for i in range(3):
        with pytest.raises(CorruptRecordError) as info:
            await store.get_task(f"t-{i}")
        assert info.value.key == store.keys.task(f"t-{i}")
    assert (await store.get_task("t-3")).status is TaskStatus.PENDING


async def test_corrupt_pending_task_in_a_listing_names_its_key(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-0"), make_task("t-1")])
    await raw.hset(store.keys.task("t-1"), "block_number", "lots")
    with pytest.raises(CorruptRecordError) as info:
        await store.list_pending_tasks()
    assert info.value.key == store.keys.task("t-1")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_at", "yesterday"),
        ("container_healthy", "yes"),
        ("environment_vars", "[{"),
        ("environment_vars", '[{"value": "no name"}]'),
        ("last_health_check", "soon"),
    ],
)
async def test_corrupt_performer_names_its_key(
    stores: Stores, raw: aioredis.Redis, field: str, value: str
) -> None:
    store = await stores.executor()
    await store.save_performer_state(make_performer("perf-bad"))
    await store.save_performer_state(make_performer("perf-good"))
    key = store.keys.performer("perf-bad")
    await raw.hset(key, field, value)

    with pytest.raises(CorruptRecordError) as info:
        await store.get_performer_state("perf-bad")
    assert info.value.key == key
    assert field in str(info.value)
    with pytest.raises(CorruptRecordError) as info:
        await store.list_performer_states()
    assert info.value.key == key
    assert (await store.get_performer_state("perf-good")).performer_id == "perf-good"


async def test_performer_missing_a_field_names_its_key(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.executor()
    await store.save_performer_state(make_performer("perf-1"))
    key = store.keys.performer("perf-1")
    await raw.hdel(key, "avs_address")
    with pytest.raises(CorruptRecordError) as info:
        await store.get_performer_state("perf-1")
    assert info.value.key == key
    assert "avs_address" in str(info.value)


async def test_corrupt_deployment_and_config_name_their_keys(stores: Stores, raw: aioredis.Redis) -> None:
    executor = await stores.executor()
    await executor.save_deployment(
        Deployment(deployment_id="d-1", avs_address=AVS, started_at=make_performer().created_at)
    )
    key = executor.keys.deployment("d-1")
    await raw.hset(key, "status", "exploded")
    with pytest.raises(CorruptRecordError) as info:
        await executor.get_deployment("d-1")
    assert info.value.key == key

    aggregator = await stores.aggregator()
    await aggregator.save_avs_config(
        AVS,
        AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[1], curve_type=CurveType.BN254),
    )
    key = aggregator.keys.avs_config(AVS)
    await raw.hset(key, "executor_operator_set_ids", "one, two")
    with pytest.raises(CorruptRecordError) as info:
        await aggregator.get_avs_config(AVS)
    assert info.value.key == key


async def test_corrupt_chain_cursor_names_its_key(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.set_last_processed_block(17000, 5)
    key = store.keys.chain(17000)
    await raw.hset(key, "last_block", "five")
    with pytest.raises(CorruptRecordError) as info:
        await store.get_last_processed_block(17000)
    assert info.value.key == key
    await store.set_last_processed_block(1, 7)  # chain 1 shares nothing with chain 17000
    assert await store.get_last_processed_block(1) == 7


# -- transitions that meet a corrupt task -------------------------------------------
#
# A task whose `attempts` was edited into something non-numeric is never taken out
# of its index by claim.lua, reap.lua or fail.lua (retry): every guard runs before
# the first write, so the task stays where it was for an operator to repair, and the
# other tasks go on being claimed and reaped.


async def _indexes_holding(raw: aioredis.Redis, store: object, task_id: str) -> list[TaskStatus]:
    keys = store.keys  # type: ignore[attr-defined]
    return [s for s in TaskStatus if await raw.zscore(keys.tasks(s), task_id) is not None]


async def _call(coro: object) -> None:
    with contextlib.suppress(PonosStorageError):  # refusing is fine; losing the task is not
        await coro  # type: ignore[misc]


async def test_claim_never_orphans_a_corrupt_pending_task(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-bad"), make_task("t-good")])
    await raw.hset(store.keys.task("t-bad"), "attempts", "abc")
    claimed = await store.claim_tasks("replica-a", limit=2, lease_s=30)
    assert [c.task.task_id for c in claimed] == ["t-good"]
    assert await _indexes_holding(raw, store, "t-bad") == [TaskStatus.PENDING]


async def test_reap_never_orphans_a_corrupt_processing_task(stores: Stores, raw: aioredis.Redis) -> None:
    clock = ManualClock()
    store = await stores.aggregator(clock=clock)
    await store.save_task(make_task("t-bad"))
    await store.claim_tasks("replica-a", limit=1, lease_s=30)
    await raw.hset(store.keys.task("t-bad"), "attempts", "abc")
    clock.advance(60)
    assert await store.reap_expired_leases() == 0
    assert await _indexes_holding(raw, store, "t-bad") == [TaskStatus.PROCESSING]


async def test_fail_with_retry_never_orphans_a_corrupt_task(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_task(make_task("t-bad"))
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=30)
    await raw.hset(store.keys.task("t-bad"), "attempts", "abc")
    with pytest.raises(CorruptRecordError) as err:
        await store.fail_task("t-bad", claimed.token, "boom", retry=True)
    assert err.value.key == store.keys.task("t-bad")
    assert await _indexes_holding(raw, store, "t-bad") == [TaskStatus.PROCESSING]


async def test_a_corrupt_task_surfaces_as_a_storage_error_not_a_redis_one(
    stores: Stores, raw: aioredis.Redis
) -> None:
    """Whatever a script does with a corrupt record, callers never see redis.exceptions.*."""
    store = await stores.aggregator()
    await store.save_task(make_task("t-bad"))
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=30)
    await raw.hset(store.keys.task("t-bad"), "attempts", "abc")
    # A redis.exceptions.* error would escape suppress() and fail the test.
    with contextlib.suppress(PonosStorageError):
        await store.fail_task("t-bad", claimed.token, "boom", retry=True)
