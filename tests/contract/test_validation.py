"""Input validation: bad input raises InvalidInputError (a ValueError) and writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from _helpers import (
    AVS_A,
    AggregatorFactory,
    claim_one,
    make_deployment,
    make_inflight,
    make_performer,
    make_task,
)

from ponos_redis import (
    AggregatorStore,
    AvsConfig,
    BlockRecord,
    Consensus,
    CurveType,
    DeploymentStatus,
    EnvironmentVar,
    ExecutorStore,
    InvalidInputError,
    NotFoundError,
    OperatorSetTaskConfig,
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
    pytest.param("x\ud800", id="lone-surrogate"),
    pytest.param("\udfff", id="lone-low-surrogate"),
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


# ---------------------------------------------------------------- text: valid UTF-8, bounded

# A lone surrogate: a Python str that cannot be encoded as UTF-8.
SURROGATE = "x\ud800"
PERFORMER_TEXT_FIELDS = [
    "resource_id",
    "status",
    "artifact_registry",
    "artifact_digest",
    "artifact_tag",
    "deployment_mode",
    "network_name",
    "container_endpoint",
    "container_hostname",
]


async def test_lone_surrogate_owner_and_reason_rejected(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError, match="owner"):
        await aggregator.claim_tasks(SURROGATE, limit=1, lease_s=5)
    assert (await aggregator.get_task("t1")).status == TaskStatus.PENDING
    with pytest.raises(InvalidInputError, match="owner"):
        await aggregator.acquire_chain_lease(1, SURROGATE, ttl_s=5)
    claimed = await claim_one(aggregator, "t1")
    with pytest.raises(InvalidInputError, match="reason"):
        await aggregator.fail_task("t1", claimed.token, "boom " + SURROGATE)
    with pytest.raises(InvalidInputError, match="reason"):
        await aggregator.fail_task("t1", claimed.token, SURROGATE, retry=True)
    record = await aggregator.get_task("t1")
    assert (record.status, record.token, record.last_error) == (TaskStatus.PROCESSING, claimed.token, None)


@pytest.mark.parametrize("field", ["block_hash", "callback_address"])
async def test_lone_surrogate_task_field_rejected(aggregator: AggregatorStore, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        await aggregator.save_task(make_task("t1", **{field: SURROGATE}))
    with pytest.raises(InvalidInputError, match=field):
        await aggregator.save_tasks([make_task("t0"), make_task("t1", **{field: SURROGATE})])
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("field", ["hash", "parent_hash"])
async def test_lone_surrogate_block_hash_rejected(aggregator: AggregatorStore, field: str) -> None:
    values: dict[str, object] = {"chain_id": 1, "number": 5, "hash": "0x1", "parent_hash": "0x0"}
    with pytest.raises(InvalidInputError, match=field):
        await aggregator.save_block(BlockRecord(**{**values, field: SURROGATE}, timestamp=1))  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 5)


@pytest.mark.parametrize("field", PERFORMER_TEXT_FIELDS)
async def test_lone_surrogate_performer_field_rejected(executor: ExecutorStore, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_performer_state(make_performer("p", **{field: SURROGATE}))
    assert await executor.list_performer_states() == []


@pytest.mark.parametrize("field", ["name", "value", "value_from_env"])
async def test_lone_surrogate_environment_var_rejected(executor: ExecutorStore, field: str) -> None:
    env = EnvironmentVar(**{"name": "A", field: SURROGATE})
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_performer_state(make_performer("p", environment_vars=[env]))
    assert await executor.list_performer_states() == []


async def test_lone_surrogate_inflight_and_deployment_text_rejected(executor: ExecutorStore) -> None:
    for field in ("status", "aggregator_address"):
        with pytest.raises(InvalidInputError, match=field):
            await executor.save_inflight_task(make_inflight("i1", **{field: SURROGATE}))
    assert await executor.list_inflight_tasks() == []
    for field in ("error", "artifact_registry", "artifact_digest"):
        with pytest.raises(InvalidInputError, match=field):
            await executor.save_deployment(make_deployment("d1", **{field: SURROGATE}))
    with pytest.raises(NotFoundError):
        await executor.get_deployment("d1")
    await executor.save_deployment(make_deployment("d1"))
    with pytest.raises(InvalidInputError, match="error"):
        await executor.update_deployment_status("d1", DeploymentStatus.FAILED, error=SURROGATE)
    assert (await executor.get_deployment("d1")).status == DeploymentStatus.PENDING
    assert len(await executor.list_deployment_history("d1")) == 1


# Documented bounds (ponos_redis/_validate.py, README "Limits"): a value at the bound is
# stored, one character more raises InvalidInputError and writes nothing. "é" is two UTF-8
# bytes: bounds count characters.


@pytest.mark.parametrize(("field", "bound"), [("block_hash", 256), ("callback_address", 256)])
async def test_task_text_bounds(aggregator: AggregatorStore, field: str, bound: int) -> None:
    assert await aggregator.save_task(make_task("fits", **{field: "é" * bound})) is True
    assert getattr((await aggregator.get_task("fits")).task, field) == "é" * bound
    with pytest.raises(InvalidInputError, match=field):
        await aggregator.save_task(make_task("over", **{field: "a" * (bound + 1)}))
    with pytest.raises(InvalidInputError, match=field):
        await aggregator.save_tasks([make_task("ok"), make_task("over", **{field: "a" * (bound + 1)})])
    assert [t.task_id for t in await aggregator.list_pending_tasks()] == ["fits"]


async def test_huge_block_hash_rejected(aggregator: AggregatorStore) -> None:
    with pytest.raises(InvalidInputError, match="block_hash"):
        await aggregator.save_task(make_task("t1", block_hash="0x" + "ab" * 10_000_000))
    await assert_no_tasks(aggregator)


@pytest.mark.parametrize("field", ["hash", "parent_hash"])
async def test_block_hash_bounds(aggregator: AggregatorStore, field: str) -> None:
    values: dict[str, object] = {"chain_id": 1, "hash": "0x1", "parent_hash": "0x0", "timestamp": 1}
    await aggregator.save_block(BlockRecord(**{**values, field: "é" * 256}, number=5))  # type: ignore[arg-type]
    assert getattr(await aggregator.get_block(1, 5), field) == "é" * 256
    with pytest.raises(InvalidInputError, match=field):
        await aggregator.save_block(BlockRecord(**{**values, field: "a" * 257}, number=6))  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 6)


@pytest.mark.parametrize("retry", [False, True])
async def test_fail_reason_bound(aggregator: AggregatorStore, retry: bool) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    with pytest.raises(InvalidInputError, match="reason"):
        await aggregator.fail_task("t1", claimed.token, "r" * 4097, retry=retry)
    with pytest.raises(InvalidInputError, match="reason"):
        await aggregator.fail_task("t1", claimed.token, "r" * 20_000_000, retry=retry)
    record = await aggregator.get_task("t1")
    assert (record.status, record.token, record.last_error) == (TaskStatus.PROCESSING, claimed.token, None)
    await aggregator.fail_task("t1", claimed.token, "é" * 4096, retry=retry)
    record = await aggregator.get_task("t1")
    assert record.status == (TaskStatus.PENDING if retry else TaskStatus.FAILED)
    assert record.last_error == "é" * 4096


@pytest.mark.parametrize("field", PERFORMER_TEXT_FIELDS)
async def test_performer_text_bounds(executor: ExecutorStore, field: str) -> None:
    await executor.save_performer_state(make_performer("p", **{field: "é" * 1024}))
    assert getattr(await executor.get_performer_state("p"), field) == "é" * 1024
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_performer_state(make_performer("p", **{field: "a" * 1025}))
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_performer_state(make_performer("q", **{field: "a" * 1025}))
    assert [p.performer_id for p in await executor.list_performer_states()] == ["p"]
    assert getattr(await executor.get_performer_state("p"), field) == "é" * 1024


@pytest.mark.parametrize(("field", "bound"), [("name", 256), ("value", 32 * 1024), ("value_from_env", 256)])
async def test_environment_var_bounds(executor: ExecutorStore, field: str, bound: int) -> None:
    fits = EnvironmentVar(**{"name": "A", field: "é" * bound})
    await executor.save_performer_state(make_performer("p", environment_vars=[fits]))
    assert (await executor.get_performer_state("p")).environment_vars == [fits]
    over = EnvironmentVar(**{"name": "A", field: "a" * (bound + 1)})
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_performer_state(make_performer("q", environment_vars=[over]))
    assert [p.performer_id for p in await executor.list_performer_states()] == ["p"]


async def test_environment_var_count_bound(executor: ExecutorStore) -> None:
    env = [EnvironmentVar(name=f"V{i}", value="1") for i in range(1024)]
    await executor.save_performer_state(make_performer("p", environment_vars=env))
    assert len((await executor.get_performer_state("p")).environment_vars) == 1024
    with pytest.raises(InvalidInputError, match="environment_vars"):
        await executor.save_performer_state(make_performer("q", environment_vars=[*env, env[0]]))
    assert [p.performer_id for p in await executor.list_performer_states()] == ["p"]


@pytest.mark.parametrize(("field", "bound"), [("status", 256), ("aggregator_address", 256)])
async def test_inflight_text_bounds(executor: ExecutorStore, field: str, bound: int) -> None:
    await executor.save_inflight_task(make_inflight("i1", **{field: "é" * bound}))
    assert getattr(await executor.get_inflight_task("i1"), field) == "é" * bound
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_inflight_task(make_inflight("i2", **{field: "a" * (bound + 1)}))
    assert [t.task_id for t in await executor.list_inflight_tasks()] == ["i1"]


@pytest.mark.parametrize(
    ("field", "bound"), [("error", 4096), ("artifact_registry", 1024), ("artifact_digest", 1024)]
)
async def test_deployment_text_bounds(executor: ExecutorStore, field: str, bound: int) -> None:
    await executor.save_deployment(make_deployment("d1", **{field: "é" * bound}))
    assert getattr(await executor.get_deployment("d1"), field) == "é" * bound
    with pytest.raises(InvalidInputError, match=field):
        await executor.save_deployment(make_deployment("d2", **{field: "a" * (bound + 1)}))
    with pytest.raises(NotFoundError):
        await executor.get_deployment("d2")


async def test_deployment_status_error_bound(executor: ExecutorStore) -> None:
    await executor.save_deployment(make_deployment("d1"))
    with pytest.raises(InvalidInputError, match="error"):
        await executor.update_deployment_status("d1", DeploymentStatus.FAILED, error="e" * 5_000_000)
    with pytest.raises(InvalidInputError, match="error"):
        await executor.update_deployment_status("d1", DeploymentStatus.FAILED, error="e" * 4097)
    assert (await executor.get_deployment("d1")).status == DeploymentStatus.PENDING
    assert len(await executor.list_deployment_history("d1")) == 1
    await executor.update_deployment_status("d1", DeploymentStatus.FAILED, error="é" * 4096)
    assert (await executor.get_deployment("d1")).error == "é" * 4096
    history = await executor.list_deployment_history("d1")
    assert [(e.status, e.error) for e in history][-1] == (DeploymentStatus.FAILED, "é" * 4096)


# ---------------------------------------------------------------- datetimes out of range once in UTC

MINUS_5 = timezone(timedelta(hours=-5))
PLUS_5 = timezone(timedelta(hours=5))
OVERFLOWING = [
    pytest.param(datetime(9999, 12, 31, 23, 0, tzinfo=MINUS_5), id="after-9999"),
    pytest.param(datetime(1, 1, 1, 1, 0, tzinfo=PLUS_5), id="before-year-1"),
]
EXTREMES = [
    pytest.param(datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC), id="last-ms"),
    pytest.param(datetime(9999, 12, 31, 18, 59, 59, 999_000, tzinfo=MINUS_5), id="last-ms-minus-5"),
    pytest.param(datetime(1, 1, 1, 0, 0, tzinfo=UTC), id="first"),
    pytest.param(datetime(1, 1, 1, 5, 0, tzinfo=PLUS_5), id="first-plus-5"),
]


@pytest.mark.parametrize("bad", OVERFLOWING)
async def test_datetime_overflowing_utc_rejected(
    aggregator: AggregatorStore, executor: ExecutorStore, bad: datetime
) -> None:
    with pytest.raises(InvalidInputError, match="deadline"):
        await aggregator.save_task(make_task("t1", deadline=bad))
    await assert_no_tasks(aggregator)
    with pytest.raises(InvalidInputError, match="created_at"):
        await executor.save_performer_state(make_performer("p", created_at=bad))
    with pytest.raises(InvalidInputError, match="last_health_check"):
        await executor.save_performer_state(make_performer("p", last_health_check=bad))
    assert await executor.list_performer_states() == []
    with pytest.raises(InvalidInputError, match="received_at"):
        await executor.save_inflight_task(make_inflight("i", received_at=bad))
    assert await executor.list_inflight_tasks() == []
    for field in ("started_at", "completed_at"):
        with pytest.raises(InvalidInputError, match=field):
            await executor.save_deployment(make_deployment("d", **{field: bad}))
    with pytest.raises(NotFoundError):
        await executor.get_deployment("d")


@pytest.mark.parametrize("extreme", EXTREMES)
async def test_extreme_datetimes_round_trip(
    aggregator: AggregatorStore, executor: ExecutorStore, extreme: datetime
) -> None:
    expected = extreme.astimezone(UTC)
    await aggregator.save_task(make_task("t1", deadline=extreme))
    assert (await aggregator.get_task("t1")).task.deadline == expected
    await executor.save_deployment(make_deployment("d", started_at=extreme, completed_at=extreme))
    deployment = await executor.get_deployment("d")
    assert (deployment.started_at, deployment.completed_at) == (expected, expected)
    await executor.save_inflight_task(make_inflight("i", received_at=extreme))
    assert (await executor.get_inflight_task("i")).received_at == expected


# ---------------------------------------------------------------- event ids


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("\u0661-0", id="arabic-indic-digit"),
        pytest.param("\uff11-0", id="fullwidth-digit"),
        pytest.param("1-" + SURROGATE, id="lone-surrogate"),
        pytest.param(f"{2**64}-0", id="2**64"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_bad_event_id_rejected(aggregator: AggregatorStore, bad: str) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError):
        async for _ in aggregator.events(after=bad):
            pass


# ---------------------------------------------------------------- tokens, leases, event ids

BAD_TOKENS = [
    pytest.param(1.0, id="float"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param("1", id="str"),
    pytest.param(None, id="none"),
    pytest.param(-1, id="negative"),
    pytest.param(2**53, id="2**53"),
    pytest.param(2**64, id="2**64"),
]


def _token_calls(store: AggregatorStore, token: object) -> list[Callable[[], Awaitable[None]]]:
    bad: Any = token
    return [
        lambda: store.renew_task_lease("t1", bad, lease_s=5),
        lambda: store.complete_task("t1", bad),
        lambda: store.fail_task("t1", bad, "boom"),
        lambda: store.fail_task("t1", bad, "boom", retry=True),
        lambda: store.release_task("t1", bad),
    ]


@pytest.mark.parametrize("bad", BAD_TOKENS)
async def test_bad_task_token_rejected(aggregator: AggregatorStore, bad: object) -> None:
    for call in _token_calls(aggregator, bad):  # no such task: the token is checked first
        with pytest.raises(InvalidInputError):
            await call()
    await aggregator.save_task(make_task("t1"))
    assert len(await aggregator.claim_tasks("w", limit=1, lease_s=30)) == 1
    before = await aggregator.get_task("t1")
    for call in _token_calls(aggregator, bad):
        with pytest.raises(InvalidInputError):
            await call()
    assert await aggregator.get_task("t1") == before


async def test_token_of_the_right_value_but_wrong_type_rejected(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    [claimed] = await aggregator.claim_tasks("w", limit=1, lease_s=30)
    for bad in (float(claimed.token), str(claimed.token)):
        for call in _token_calls(aggregator, bad):
            with pytest.raises(InvalidInputError):
                await call()
    # Nor is a finished task's replay answered for a token that is not an int.
    await aggregator.complete_task("t1", claimed.token)
    done = await aggregator.get_task("t1")
    with pytest.raises(InvalidInputError):
        await aggregator.complete_task("t1", float(claimed.token))  # type: ignore[arg-type]
    await aggregator.complete_task("t1", claimed.token)
    assert await aggregator.get_task("t1") == done


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        *(pytest.param("token", p.values[0], id=f"token-{p.id}") for p in BAD_TOKENS),
        pytest.param("chain_id", "1", id="chain_id-str"),
        pytest.param("chain_id", -1, id="chain_id-negative"),
        pytest.param("chain_id", 1.0, id="chain_id-float"),
        pytest.param("owner", "", id="owner-empty"),
        pytest.param("owner", "a b", id="owner-space"),
        pytest.param("owner", None, id="owner-none"),
        pytest.param("owner", 7, id="owner-int"),
    ],
)
async def test_malformed_chain_lease_rejected(aggregator: AggregatorStore, field: str, bad: object) -> None:
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=10)
    assert lease is not None
    malformed = msgspec.structs.replace(lease, **{field: bad})
    with pytest.raises(InvalidInputError):
        await aggregator.renew_chain_lease(malformed, ttl_s=10)
    with pytest.raises(InvalidInputError):
        await aggregator.release_chain_lease(malformed)
    # The real lease is untouched: it still renews, and nobody else can take it.
    assert (await aggregator.renew_chain_lease(lease, ttl_s=10)).token == lease.token
    assert await aggregator.acquire_chain_lease(1, "other", ttl_s=10) is None


@pytest.mark.parametrize("bad", [p for p in BAD_TOKENS if p.id != "none"])  # None: no fence
async def test_bad_fence_rejected(aggregator: AggregatorStore, bad: object) -> None:
    await aggregator.set_last_processed_block(1, 5)
    with pytest.raises(InvalidInputError):
        await aggregator.set_last_processed_block(1, 6, fence=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.rewind_chain(1, 4, fence=bad)  # type: ignore[arg-type]
    assert await aggregator.get_last_processed_block(1) == 5


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("18446744073709551616-0", id="ms-2**64"),
        pytest.param("1-18446744073709551616", id="seq-2**64"),
        pytest.param("99999999999999999999-0", id="ms-20-nines"),
    ],
)
async def test_event_id_beyond_u64_rejected(aggregator: AggregatorStore, bad: str) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError):
        async for _ in aggregator.events(after=bad):
            pass


@pytest.mark.parametrize(
    ("good", "later"),
    [
        ("0-0", True),
        ("1-18446744073709551615", True),
        ("18446744073709551615-0", False),
        ("18446744073709551615-18446744073709551615", False),
    ],
)
async def test_event_ids_up_to_u64_accepted(aggregator: AggregatorStore, good: str, later: bool) -> None:
    await aggregator.save_task(make_task("t1"))
    after = [e.subject async for e in aggregator.events(after=good)]
    assert after == (["t1"] if later else [])
    async with asyncio.timeout(5):
        waited = [e.subject async for e in aggregator.events(after=good, block_s=0.05)]
    assert waited == after


# ---------------------------------------------------------------- huge numbers, enum value types

# 10**400 is beyond every float; 10**5000 has more digits than repr() writes (its str()
# raises ValueError), so an error message must not quote it digit by digit.
HUGE_INTS = [
    pytest.param(10**400, id="10**400"),
    pytest.param(10**5000, id="10**5000"),
    pytest.param(-(10**5000), id="-10**5000"),
]


@pytest.mark.parametrize("huge", HUGE_INTS)
async def test_huge_integer_durations_rejected(
    aggregator: AggregatorStore, executor: ExecutorStore, huge: int
) -> None:
    await aggregator.save_task(make_task("t1"))
    with pytest.raises(InvalidInputError, match="ttl_s"):
        await aggregator.acquire_chain_lease(1, "poller", ttl_s=huge)
    with pytest.raises(InvalidInputError, match="ttl_s"):
        await aggregator.try_runner_lease("reaper", "a", ttl_s=huge)
    with pytest.raises(InvalidInputError, match="lease_s"):
        await aggregator.claim_tasks("w", limit=1, lease_s=huge)
    claimed = await claim_one(aggregator, "t1")
    with pytest.raises(InvalidInputError, match="lease_s"):
        await aggregator.renew_task_lease("t1", claimed.token, lease_s=huge)
    lease = await aggregator.acquire_chain_lease(1, "poller", ttl_s=10)
    assert lease is not None
    with pytest.raises(InvalidInputError, match="ttl_s"):
        await aggregator.renew_chain_lease(lease, ttl_s=huge)
    with pytest.raises(InvalidInputError, match="task_sla_s"):
        await aggregator.save_operator_set_config(
            AVS_A, 1, OperatorSetTaskConfig(task_sla_s=huge, curve_type=CurveType.ECDSA)
        )
    with pytest.raises(InvalidInputError, match="block_s"):
        async for _ in aggregator.events(block_s=huge):
            pass
    record = await aggregator.get_task("t1")
    assert (record.status, record.token, record.lease_until) == (
        TaskStatus.PROCESSING,
        claimed.token,
        claimed.lease_until,
    )
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_A, 1)
    assert (await aggregator.renew_chain_lease(lease, ttl_s=10)).token == lease.token


@pytest.mark.parametrize("huge", HUGE_INTS)
async def test_huge_integers_rejected_with_a_short_message(
    aggregator: AggregatorStore, executor: ExecutorStore, huge: int
) -> None:
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: aggregator.get_last_processed_block(huge),
        lambda: aggregator.set_last_processed_block(1, huge),
        lambda: aggregator.set_last_processed_block(1, 5, fence=huge),
        lambda: aggregator.complete_task("t1", huge),
        lambda: aggregator.claim_tasks("w", limit=huge if huge < 0 else -1, lease_s=5),
        lambda: aggregator.list_pending_tasks(limit=-abs(huge)),
        lambda: aggregator.trim_finished_tasks(limit=-abs(huge)),
        lambda: aggregator.save_task(make_task("t1", block_number=huge)),
        lambda: aggregator.save_task(make_task("t1", avs_address=huge)),
        lambda: aggregator.update_task_status("t1", huge),  # type: ignore[arg-type]
        lambda: aggregator.save_avs_config(
            AVS_A,
            AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[huge], curve_type="ecdsa"),  # type: ignore[arg-type]
        ),
        lambda: aggregator.save_operator_set_config(
            AVS_A,
            1,
            OperatorSetTaskConfig(task_sla_s=1, curve_type=[huge]),  # type: ignore[arg-type]
        ),
        lambda: executor.update_deployment_status("d1", [huge]),  # type: ignore[arg-type]
        lambda: executor.save_inflight_task(make_inflight("i1", operator_set_id=huge)),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError) as refused:
            await call()
        assert len(str(refused.value)) < 300
    with pytest.raises(InvalidInputError) as refused:
        async for _ in aggregator.events(after=huge):  # type: ignore[arg-type]
            pass
    assert len(str(refused.value)) < 300
    await assert_no_tasks(aggregator)
    with pytest.raises(NotFoundError):
        await aggregator.get_last_processed_block(1)
    assert await executor.list_inflight_tasks() == []


async def test_long_refused_text_is_quoted_briefly(aggregator: AggregatorStore) -> None:
    with pytest.raises(InvalidInputError) as refused:
        await aggregator.get_avs_config("0x" + "ab" * 500_000)
    assert "avs_address" in str(refused.value)
    assert len(str(refused.value)) < 300
    with pytest.raises(InvalidInputError) as refused:
        async for _ in aggregator.events(after="1" * 100_000 + "-0"):
            pass
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize("bad", [True, False, 1.0, 0.0, "1", None, 2, [0]])
async def test_consensus_type_must_be_a_consensus_type_value(
    aggregator: AggregatorStore, bad: object
) -> None:
    """An int enum takes an int: True and 1.0 equal 1, but are not consensus types."""
    config = OperatorSetTaskConfig(task_sla_s=5, curve_type=CurveType.ECDSA, consensus=Consensus(type=bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"consensus\.type"):
        await aggregator.save_operator_set_config(AVS_A, 1, config)
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_A, 1)


@pytest.mark.parametrize("bad", [True, 1, b"ecdsa", "ECDSA", None])
async def test_curve_type_must_be_a_curve_type_value(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError, match="curve_type"):
        await aggregator.save_operator_set_config(
            AVS_A,
            1,
            OperatorSetTaskConfig(task_sla_s=5, curve_type=bad),  # type: ignore[arg-type]
        )
    avs = AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[], curve_type=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="curve_type"):
        await aggregator.save_avs_config(AVS_A, avs)
    with pytest.raises(NotFoundError):
        await aggregator.get_avs_config(AVS_A)


async def test_enum_values_and_members_are_both_accepted(aggregator: AggregatorStore) -> None:
    config = OperatorSetTaskConfig(task_sla_s=5, curve_type="bn254", consensus=Consensus(type=1, threshold=5))  # type: ignore[arg-type]
    await aggregator.save_operator_set_config(AVS_A, 1, config)
    stored = await aggregator.get_operator_set_config(AVS_A, 1)
    assert (stored.curve_type, stored.consensus.type) == (CurveType.BN254, 1)
