"""Every field of a task comes back as it went in (after normalisation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from _helpers import AVS_A, START, claim_one, make_task

from ponos_redis import AggregatorStore, ManualClock, Task

NON_UTF8 = bytes(range(256))
PAYLOADS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00", id="nul"),
    pytest.param(b"\xff\xfe\x80\xc3\x28", id="non-utf8"),
    pytest.param(NON_UTF8, id="every-byte"),
    pytest.param("héllo, タスク".encode(), id="utf8"),
    pytest.param(b"\r\n\t -- ]] '\"\\", id="lua-and-shell-chars"),
    pytest.param(b"x" * 100_000, id="100k"),
]


async def read_back(store: AggregatorStore, task: Task) -> list[Task]:
    """The task as get_task, list_pending_tasks and claim_tasks return it."""
    assert await store.save_task(task) is True
    from_get = (await store.get_task(task.task_id)).task
    [from_list] = await store.list_pending_tasks()
    claimed = await claim_one(store, task.task_id)
    return [from_get, from_list, claimed.task]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_payload_round_trip(aggregator: AggregatorStore, payload: bytes) -> None:
    task = make_task("t1", payload=payload)
    for got in await read_back(aggregator, task):
        assert type(got.payload) is bytes
        assert got.payload == payload
        assert got == task


async def test_every_field_round_trips(aggregator: AggregatorStore) -> None:
    task = Task(
        task_id="タスク-0x1:2/3",
        avs_address=AVS_A,
        operator_set_id=2**53 - 1,
        chain_id=11155111,
        block_number=0,
        block_hash="0x" + "Fe" * 32,
        callback_address="0xCaLLbAcK-free-form ünïcode",
        deadline=datetime(2030, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC),
        threshold_bips=10_000,
        payload=b"\x00\x01\xff",
    )
    for got in await read_back(aggregator, task):
        assert got == task
        assert got.block_hash == "0x" + "Fe" * 32  # hashes are not lower-cased
        assert got.callback_address == task.callback_address


async def test_defaults_round_trip(aggregator: AggregatorStore) -> None:
    task = Task(
        task_id="t1",
        avs_address=AVS_A,
        operator_set_id=0,
        chain_id=0,
        block_number=0,
        block_hash="",
        callback_address="",
    )
    for got in await read_back(aggregator, task):
        assert got == task
        assert got.deadline is None
        assert got.threshold_bips == 0
        assert got.payload == b""


@pytest.mark.parametrize(
    "zone",
    [timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(0))],
    ids=["+09:00", "-05:30", "utc-offset-zero"],
)
async def test_deadline_in_another_zone_comes_back_in_utc(
    aggregator: AggregatorStore, zone: timezone
) -> None:
    instant = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    task = make_task("t1", deadline=instant.astimezone(zone))
    for got in await read_back(aggregator, task):
        assert got.deadline == instant
        assert got.deadline is not None
        assert got.deadline.utcoffset() == timedelta(0)
        assert got.deadline.microsecond == 678_000


async def test_deadline_truncated_to_milliseconds(aggregator: AggregatorStore) -> None:
    task = make_task("t1", deadline=datetime(2030, 1, 1, 0, 0, 0, 123_999, tzinfo=UTC))
    for got in await read_back(aggregator, task):
        assert got.deadline == datetime(2030, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)


async def test_address_stored_lower_case(aggregator: AggregatorStore) -> None:
    task = make_task("t1", avs_address="0X" + AVS_A[2:].upper())
    for got in await read_back(aggregator, task):
        assert got.avs_address == AVS_A


async def test_store_set_times_are_ms_truncated_utc(aggregator: AggregatorStore, clock: ManualClock) -> None:
    clock.set(datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=timezone(timedelta(hours=1))))
    now_ms = datetime(2026, 3, 4, 4, 6, 7, 891_000, tzinfo=UTC)
    await aggregator.save_task(make_task("t1"))
    record = await aggregator.get_task("t1")
    assert record.created_at == now_ms
    assert record.updated_at == now_ms
    assert record.created_at.utcoffset() == timedelta(0)
    claimed = await claim_one(aggregator, "t1", lease_s=2.5)
    assert claimed.lease_until == now_ms + timedelta(seconds=2.5)
    assert claimed.lease_until.utcoffset() == timedelta(0)
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=1.25)
    assert lease is not None
    assert lease.expires_at == now_ms + timedelta(seconds=1.25)
    assert lease.expires_at.utcoffset() == timedelta(0)


async def test_record_times_stay_utc_after_transitions(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1", lease_s=30)
    clock.advance(0.0015)  # 1.5 ms: truncated to 1 ms
    await aggregator.complete_task("t1", claimed.token)
    record = await aggregator.get_task("t1")
    assert record.updated_at == START + timedelta(milliseconds=1)
    assert record.created_at == START
    assert record.updated_at.tzinfo is not None
    assert record.updated_at.utcoffset() == timedelta(0)
