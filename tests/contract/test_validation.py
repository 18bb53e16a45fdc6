"""Input validation: bad input raises InvalidInputError (a ValueError) and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _helpers import AVS_A, AggregatorFactory, make_deployment, make_inflight, make_performer, make_task

from ponos_redis import (
    AggregatorStore,
    BlockRecord,
    ExecutorStore,
    InvalidInputError,
    NotFoundError,
    PonosStorageError,
    TaskStatus,
)

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param(" a", id="leading-space"),
    pytest.param("a ", id="trailing-space"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\x7fb", id="del"),
    pytest.param("x" * 257, id="257-chars"),
    pytest.param(None, id="none"),
    pytest.param(12, id="int"),
]
GOOD_IDS = [
    pytest.param("タスク-1", id="non-ascii"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param("a", id="one-char"),
    pytest.param("0xabc:def/ghi#1", id="punctuation"),
]
BAD_ADDRESSES = [
    pytest.param("0x" + "ab" * 19, id="short"),
    pytest.param("0x" + "ab" * 21, id="long"),
    pytest.param("0x" + "ag" * 20, id="non-hex"),
    pytest.param("ab" * 21, id="no-prefix"),
    pytest.param("1x" + "ab" * 20, id="bad-prefix"),
    pytest.param("", id="empty"),
    pytest.param(None, id="none"),
    pytest.param(" 0x" + "ab" * 20, id="space"),
]
GOOD_ADDRESSES = [
    pytest.param("0x" + "ab" * 20, id="lower"),
    pytest.param("0x" + "AB" * 20, id="upper"),
    pytest.param("0X" + "aB" * 20, id="upper-prefix"),
]
BAD_INTS = [
    pytest.param(-1, id="negative"),
    pytest.param(2**53, id="2**53"),
    pytest.param(2**64, id="2**64"),
    pytest.param(True, id="bool"),
    pytest.param(1.0, id="float"),
    pytest.param("1", id="str"),
    pytest.param(None, id="none"),
]
INT_FIELDS = ["operator_set_id", "chain_id", "block_number", "threshold_bips"]


def test_invalid_input_error_is_a_value_error() -> None:
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(InvalidInputError, PonosStorageError)


async def assert_no_tasks(store: AggregatorStore) -> None:
    counts = await store.count_tasks()
    assert sum(counts.values()) == 0


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_task_id_rejected(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task(bad))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r".+"):
        await aggregator.save_tasks([make_task(bad)])  # type: ignore[arg-type]
    await assert_no_tasks(aggregator)
    with pytest.raises(InvalidInputError):
        await aggregator.get_task(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.delete_task(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.update_task_status(bad, TaskStatus.FAILED)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.complete_task(bad, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", GOOD_IDS)
async def test_good_task_id_accepted(aggregator: AggregatorStore, good: str) -> None:
    assert await aggregator.save_task(make_task(good)) is True
    record = await aggregator.get_task(good)
    assert record.task.task_id == good
    assert [t.task_id for t in await aggregator.list_pending_tasks()] == [good]
    [claimed] = await aggregator.claim_tasks(good, limit=1, lease_s=5)
    assert claimed.task.task_id == good
    await aggregator.complete_task(good, claimed.token)
    await aggregator.delete_task(good)
    with pytest.raises(NotFoundError):
        await aggregator.get_task(good)


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_executor_ids_rejected(executor: ExecutorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await executor.save_performer_state(make_performer(bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.get_performer_state(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.save_inflight_task(make_inflight(bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.get_inflight_task(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.save_deployment(make_deployment(bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.get_deployment(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.mark_task_processed(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await executor.is_task_processed(bad)  # type: ignore[arg-type]
    assert await executor.list_performer_states() == []
    assert await executor.list_inflight_tasks() == []


@pytest.mark.parametrize("good", GOOD_IDS)
async def test_good_executor_ids_accepted(executor: ExecutorStore, good: str) -> None:
    await executor.save_performer_state(make_performer(good))
    assert (await executor.get_performer_state(good)).performer_id == good
    await executor.save_inflight_task(make_inflight(good))
    assert (await executor.get_inflight_task(good)).task_id == good
    await executor.save_deployment(make_deployment(good))
    assert (await executor.get_deployment(good)).deployment_id == good
    assert await executor.mark_task_processed(good) is True
    assert await executor.is_task_processed(good) is True


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize("bad", BAD_ADDRESSES)
async def test_bad_task_address_rejected(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task("t1", avs_address=bad))
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("good", GOOD_ADDRESSES)
async def test_good_task_address_stored_lower_case(aggregator: AggregatorStore, good: str) -> None:
    await aggregator.save_task(make_task("t1", avs_address=good))
    assert (await aggregator.get_task("t1")).task.avs_address == "0x" + good[2:].lower()


@pytest.mark.parametrize("bad", BAD_ADDRESSES)
async def test_bad_executor_addresses_rejected(executor: ExecutorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await executor.save_performer_state(make_performer("p", avs_address=bad))
    with pytest.raises(InvalidInputError):
        await executor.save_inflight_task(make_inflight("i", avs_address=bad))
    with pytest.raises(InvalidInputError):
        await executor.save_inflight_task(make_inflight("i", operator_address=bad))
    with pytest.raises(InvalidInputError):
        await executor.save_deployment(make_deployment("d", avs_address=bad))
    assert await executor.list_performer_states() == []
    assert await executor.list_inflight_tasks() == []
    with pytest.raises(NotFoundError):
        await executor.get_deployment("d")


async def test_free_form_addresses_are_kept_as_given(
    aggregator: AggregatorStore, executor: ExecutorStore
) -> None:
    await aggregator.save_task(make_task("t1", callback_address="Not An Address, Kept As Is"))
    assert (await aggregator.get_task("t1")).task.callback_address == "Not An Address, Kept As Is"
    await executor.save_inflight_task(make_inflight("i1", aggregator_address="0xABCDEF"))
    assert (await executor.get_inflight_task("i1")).aggregator_address == "0xABCDEF"


# ---------------------------------------------------------------- integers


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("bad", BAD_INTS)
async def test_bad_task_integer_rejected(aggregator: AggregatorStore, field: str, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task("t1", **{field: bad}))
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("good", [0, 2**53 - 1])
async def test_task_integer_bounds_accepted(aggregator: AggregatorStore, field: str, good: int) -> None:
    await aggregator.save_task(make_task("t1", **{field: good}))
    assert getattr((await aggregator.get_task("t1")).task, field) == good


@pytest.mark.parametrize("bad", BAD_INTS)
async def test_bad_chain_integers_rejected(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.get_last_processed_block(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.set_last_processed_block(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.set_last_processed_block(1, bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await aggregator.get_last_processed_block(1)
    with pytest.raises(InvalidInputError):
        await aggregator.acquire_chain_lease(bad, "poller", ttl_s=5)  # type: ignore[arg-type]
    for field in ("chain_id", "number", "timestamp"):
        values: dict[str, object] = {
            "chain_id": 1,
            "number": 5,
            "hash": "0x1",
            "parent_hash": "0x0",
            "timestamp": 1,
            field: bad,
        }
        with pytest.raises(InvalidInputError):
            await aggregator.save_block(BlockRecord(**values))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.get_block(1, bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 5)


@pytest.mark.parametrize("bad", BAD_INTS)
async def test_bad_inflight_operator_set_rejected(executor: ExecutorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await executor.save_inflight_task(make_inflight("i1", operator_set_id=bad))
    assert await executor.list_inflight_tasks() == []


# ---------------------------------------------------------------- datetimes, payloads, strings


async def test_naive_datetimes_rejected(aggregator: AggregatorStore, executor: ExecutorStore) -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task("t1", deadline=naive))
    await assert_no_tasks(aggregator)
    with pytest.raises(InvalidInputError):
        await executor.save_performer_state(make_performer("p", created_at=naive))
    with pytest.raises(InvalidInputError):
        await executor.save_performer_state(
            make_performer("p", last_health_check=naive, created_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    with pytest.raises(InvalidInputError):
        await executor.save_inflight_task(make_inflight("i", received_at=naive))
    with pytest.raises(InvalidInputError):
        await executor.save_deployment(make_deployment("d", started_at=naive))
    with pytest.raises(InvalidInputError):
        await executor.save_deployment(make_deployment("d", completed_at=naive))
    assert await executor.list_performer_states() == []
    assert await executor.list_inflight_tasks() == []


@pytest.mark.parametrize("bad", ["2026-01-01T00:00:00Z", 1_767_225_600])
async def test_non_datetime_deadline_rejected(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task("t1", deadline=bad))
    await assert_no_tasks(aggregator)


async def test_payload_size_limit(make_aggregator: AggregatorFactory) -> None:
    store = await make_aggregator(max_payload_bytes=16)
    assert await store.save_task(make_task("fits", payload=b"\xff" * 16)) is True
    with pytest.raises(InvalidInputError):
        await store.save_task(make_task("too-big", payload=b"\xff" * 17))
    with pytest.raises(InvalidInputError):
        await store.save_tasks([make_task("ok", payload=b""), make_task("too-big", payload=b"x" * 17)])
    assert [t.task_id for t in await store.list_pending_tasks()] == ["fits"]


@pytest.mark.parametrize("bad", ["text", bytearray(b"abc"), memoryview(b"abc"), None, 5])
async def test_non_bytes_payload_rejected(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task("t1", payload=bad))
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("field", ["block_hash", "callback_address"])
async def test_non_string_task_fields_rejected(aggregator: AggregatorStore, field: str) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(make_task("t1", **{field: b"bytes"}))
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("bad", [None, "t1", {"task_id": "t1"}, 3])
async def test_non_task_rejected(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_task(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.save_tasks([make_task("t1"), bad])  # type: ignore[list-item]
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
async def test_bad_limits_rejected(aggregator: AggregatorStore, bad: object) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError):
        await aggregator.claim_tasks("w", limit=bad, lease_s=5)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(InvalidInputError):
            await aggregator.list_pending_tasks(limit=bad)  # type: ignore[arg-type]
    assert (await aggregator.get_task("t1")).status == TaskStatus.PENDING


async def test_address_filter_is_validated(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError):
        await aggregator.list_pending_tasks(AVS_A[:-1])
