"""A record edited by hand into something that does not decode raises
CorruptRecordError naming its key; the other records stay readable."""

from __future__ import annotations

import contextlib
import logging

import pytest
import redis.asyncio as aioredis
from _redis_support import AVS, Stores, all_events, make_performer, make_task

from ponos_redis import (
    AvsConfig,
    CorruptRecordError,
    CurveType,
    Deployment,
    ManualClock,
    PonosStorageError,
    TaskStatus,
)
from ponos_redis.backends.redis import RedisAggregatorStore

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


async def test_a_listing_skips_a_corrupt_pending_task_and_names_its_key(
    stores: Stores, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-0"), make_task("t-1"), make_task("t-2")])
    await raw.hset(store.keys.task("t-1"), "block_number", "lots")
    with caplog.at_level(logging.WARNING, logger="ponos_redis"):
        listed = await store.list_pending_tasks()
    assert [t.task_id for t in listed] == ["t-0", "t-2"]
    assert store.keys.task("t-1") in caplog.text
    assert "block_number" in caplog.text


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
# A claim or the reaper that meets a task it cannot read sets it aside: off every
# status index, onto the set-aside index, with a task.set_aside event. Its hash is
# left for an operator to repair, and the other tasks go on being claimed and reaped.


async def _indexes_holding(raw: aioredis.Redis, store: object, task_id: str) -> list[TaskStatus]:
    keys = store.keys  # type: ignore[attr-defined]
    return [s for s in TaskStatus if await raw.zscore(keys.tasks(s), task_id) is not None]


async def _set_aside(raw: aioredis.Redis, store: RedisAggregatorStore) -> list[str]:
    return [m.decode() for m in await raw.zrange(store.keys.set_aside, 0, -1)]


async def _call(coro: object) -> None:
    with contextlib.suppress(PonosStorageError):  # refusing is fine; losing the task is not
        await coro  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [("attempts", "abc"), ("deadline", "tomorrow"), ("status", "bogus")],
)
async def test_claim_sets_aside_a_pending_task_it_cannot_read(
    stores: Stores, raw: aioredis.Redis, field: str, value: str
) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-bad"), make_task("t-good")])
    await raw.hset(store.keys.task("t-bad"), field, value)
    claimed = await store.claim_tasks("replica-a", limit=2, lease_s=30)
    assert [c.task.task_id for c in claimed] == ["t-good"]
    assert await _indexes_holding(raw, store, "t-bad") == []
    assert await _set_aside(raw, store) == ["t-bad"]
    assert (await raw.hget(store.keys.task("t-bad"), field)) == value.encode()  # left for repair
    assert [e.subject for e in await all_events(store) if e.kind == "task.set_aside"] == ["t-bad"]


async def test_one_corrupt_task_never_poisons_its_batch_mates(stores: Stores, raw: aioredis.Redis) -> None:
    """A field only Python can judge (chain_id) edited by hand: the nine healthy tasks
    are claimed and returned with their tokens, the tenth is set aside, not claimed again."""
    store = await stores.aggregator()
    await store.save_tasks([make_task(f"t-{i}") for i in range(10)])
    await raw.hset(store.keys.task("t-4"), "chain_id", "oops")
    claimed = await store.claim_tasks("replica-a", limit=10, lease_s=30)
    assert sorted(c.task.task_id for c in claimed) == sorted(f"t-{i}" for i in range(10) if i != 4)
    for c in claimed:
        await store.complete_task(c.task.task_id, c.token)  # every token is the current one
    assert await _set_aside(raw, store) == ["t-4"]
    assert await _indexes_holding(raw, store, "t-4") == []
    assert await store.claim_tasks("replica-b", limit=10, lease_s=30) == []
    assert await store.list_pending_tasks() == []
    counts = await store.count_tasks()
    assert counts[TaskStatus.COMPLETED] == 9
    assert counts[TaskStatus.PROCESSING] == 0


async def test_reap_sets_aside_a_processing_task_it_cannot_read(stores: Stores, raw: aioredis.Redis) -> None:
    clock = ManualClock()
    store = await stores.aggregator(clock=clock)
    await store.save_tasks([make_task("t-bad"), make_task("t-good")])
    await store.claim_tasks("replica-a", limit=2, lease_s=30)
    await raw.hset(store.keys.task("t-bad"), "attempts", "abc")
    clock.advance(60)
    assert await store.reap_expired_leases() == 1  # t-good
    assert await _indexes_holding(raw, store, "t-bad") == []
    assert await _set_aside(raw, store) == ["t-bad"]
    assert (await store.get_task("t-good")).status is TaskStatus.PENDING


async def test_delete_removes_a_set_aside_task(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    await store.save_task(make_task("t-bad"))
    await raw.hset(store.keys.task("t-bad"), "attempts", "abc")
    assert await store.claim_tasks("replica-a", limit=1, lease_s=30) == []
    await store.delete_task("t-bad")
    assert await _set_aside(raw, store) == []
    assert await raw.exists(store.keys.task("t-bad")) == 0


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
