"""Records <-> Redis hash fields (ponos_redis._codec) and script replies ->
results or errors (ponos_redis._ops): pure functions, no server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from msgspec import inspect as mi

from ponos_redis import (
    AlreadyExistsError,
    AvsConfig,
    CorruptRecordError,
    CurveType,
    Deployment,
    DeploymentStatus,
    EnvironmentVar,
    InflightTask,
    InvalidTransitionError,
    NotFoundError,
    PerformerState,
    PonosStorageError,
    StaleLeaseError,
    Task,
    TaskStatus,
)
from ponos_redis import _codec as codec
from ponos_redis._ops import check

KEY = "ponos:{ns}:task:t-1"
AVS = "0x" + "ab" * 20
OPERATOR = "0x" + "12" * 20
# Millisecond precision: what a store keeps.
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def as_redis_reply(fields: dict[str, bytes | str]) -> dict[bytes, bytes]:
    """What HGETALL returns through redis-py without decode_responses."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def make_task(**overrides: Any) -> Task:
    values: dict[str, Any] = {
        "task_id": "t-1",
        "avs_address": AVS,
        "operator_set_id": 3,
        "chain_id": 11155111,
        "block_number": 2**53 - 1,
        "block_hash": "0x" + "ff" * 32,
        "callback_address": "0xCallBack",
        "deadline": T0 + timedelta(minutes=5),
        "threshold_bips": 6667,
        "payload": b"\x00\xff\n binary \r\n",
    }
    values.update(overrides)
    return Task(**values)


def make_performer(**overrides: Any) -> PerformerState:
    values: dict[str, Any] = {
        "performer_id": "perf:1",
        "avs_address": AVS,
        "resource_id": "res-1",
        "status": "running",
        "artifact_registry": "ghcr.io/x/y",
        "artifact_digest": "sha256:" + "0" * 64,
        "artifact_tag": "v1",
        "deployment_mode": "docker",
        "created_at": T0,
        "last_health_check": None,
        "container_healthy": True,
        "application_healthy": False,
        "network_name": "réseau",
        "container_endpoint": "10.0.0.1:8080",
        "container_hostname": "perf-1",
        "environment_vars": [
            EnvironmentVar(name="A", value="1"),
            EnvironmentVar(name="SECRET", value_from_env="HOST_SECRET"),
            EnvironmentVar(name="Q", value='quote " and , comma'),
        ],
    }
    values.update(overrides)
    return PerformerState(**values)


RECORDS: list[msgspec.Struct] = [
    make_task(),
    make_task(deadline=None, payload=b"", threshold_bips=0),
    make_performer(),
    make_performer(last_health_check=T0 + timedelta(seconds=1), environment_vars=[]),
    Deployment(
        deployment_id="dep-1",
        avs_address=AVS,
        artifact_registry="ghcr.io/x/y",
        artifact_digest="sha256:abc",
        status=DeploymentStatus.DEPLOYING,
        started_at=T0,
        completed_at=None,
        error="",
    ),
    Deployment(
        deployment_id="dep-2",
        avs_address=AVS,
        status=DeploymentStatus.FAILED,
        started_at=T0,
        completed_at=T0 + timedelta(seconds=30),
        error="image pull failed: 404",
    ),
    InflightTask(
        task_id="t-1",
        avs_address=AVS,
        operator_address=OPERATOR,
        received_at=T0,
        status="signing",
        aggregator_address="agg.example:9000",
        operator_set_id=7,
    ),
    AvsConfig(
        aggregator_operator_set_id=0, executor_operator_set_ids=[1, 2, 2**53 - 1], curve_type=CurveType.BN254
    ),
    AvsConfig(aggregator_operator_set_id=5, executor_operator_set_ids=[], curve_type=CurveType.UNKNOWN),
]


def _ids(record: msgspec.Struct) -> str:
    return type(record).__name__


def _fields(cls: type) -> list[mi.Field]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return list(info.fields)


@pytest.mark.parametrize("record", RECORDS, ids=_ids)
def test_round_trip_through_redis_replies(record: msgspec.Struct) -> None:
    encoded = codec.encode_record(record)
    assert set(encoded) == {f.name for f in _fields(type(record))}, "every field is stored"
    assert codec.decode_record(type(record), KEY, as_redis_reply(encoded)) == record
    # str keys and values (a decode_responses client) decode the same, bytes fields aside.
    if not any(isinstance(v, bytes) for v in encoded.values()):
        assert codec.decode_record(type(record), KEY, dict(encoded)) == record


@pytest.mark.parametrize("record", RECORDS, ids=_ids)
def test_non_bytes_fields_are_readable_text(record: msgspec.Struct) -> None:
    encoded = codec.encode_record(record)
    for field in _fields(type(record)):
        value = encoded[field.name]
        if isinstance(field.type, mi.BytesType):
            assert isinstance(value, bytes)
            assert value == getattr(record, field.name), "bytes fields are stored raw"
            continue
        assert isinstance(value, str), f"{field.name} is not text: {value!r}"
        assert value.encode("utf-8").decode("utf-8") == value
        assert value.isprintable(), f"{field.name} is not printable: {value!r}"


def test_field_formats_are_the_documented_ones() -> None:
    perf = codec.encode_record(make_performer())
    assert perf["created_at"] == str(int(T0.timestamp() * 1000)) == "1767323045678"
    assert perf["last_health_check"] == ""
    assert perf["container_healthy"] == "true"
    assert perf["application_healthy"] == "false"
    assert json.loads(perf["environment_vars"]) == [
        {"name": "A", "value": "1", "value_from_env": ""},
        {"name": "SECRET", "value": "", "value_from_env": "HOST_SECRET"},
        {"name": "Q", "value": 'quote " and , comma', "value_from_env": ""},
    ]
    task = codec.encode_record(make_task())
    assert task["chain_id"] == "11155111"
    assert task["block_number"] == "9007199254740991"
    assert task["deadline"] == "1767323345678"
    dep = codec.encode_record(RECORDS[4])
    assert dep["status"] == "deploying"
    assert dep["completed_at"] == ""
    avs = codec.encode_record(RECORDS[7])
    assert avs["curve_type"] == "bn254"
    assert json.loads(avs["executor_operator_set_ids"]) == [1, 2, 2**53 - 1]


def test_times_in_any_zone_round_trip_as_the_same_instant_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    record = make_task(deadline=T0.astimezone(plus2))
    decoded = codec.decode_record(Task, KEY, as_redis_reply(codec.encode_record(record)))
    assert decoded.deadline == T0
    assert decoded.deadline is not None
    assert decoded.deadline.utcoffset() == timedelta(0)


def test_encode_task_follows_task_fields_order() -> None:
    task = make_task()
    values = codec.encode_task(task)
    assert len(values) == len(codec.TASK_FIELDS)
    assert dict(zip(codec.TASK_FIELDS, values, strict=True)) == codec.encode_record(task)
    assert codec.decode_task(KEY, as_redis_reply(codec.encode_record(task))) == task


# -- corrupt records --------------------------------------------------------------


@pytest.mark.parametrize("record", RECORDS, ids=_ids)
def test_missing_field_is_corrupt_and_names_the_key(record: msgspec.Struct) -> None:
    fields = as_redis_reply(codec.encode_record(record))
    name = next(iter(fields))
    del fields[name]
    with pytest.raises(CorruptRecordError) as info:
        codec.decode_record(type(record), KEY, fields)
    assert info.value.key == KEY
    assert name.decode() in str(info.value)
    assert KEY in str(info.value)


@pytest.mark.parametrize(
    ("cls", "record", "field", "raw"),
    [
        (Task, make_task(), "chain_id", b"abc"),
        (Task, make_task(), "block_number", b"1.5"),
        (Task, make_task(), "deadline", b"soon"),
        (InflightTask, RECORDS[6], "operator_set_id", b""),
        (PerformerState, make_performer(), "container_healthy", b"yes"),
        (PerformerState, make_performer(), "environment_vars", b"[{"),
        (PerformerState, make_performer(), "network_name", b"\xff\xfe"),
        (Deployment, RECORDS[4], "status", b"bogus"),
        (AvsConfig, RECORDS[7], "executor_operator_set_ids", b'["x"]'),
        (AvsConfig, RECORDS[7], "curve_type", b"ed25519"),
    ],
)
def test_undecodable_value_is_corrupt_and_names_the_key(
    cls: type[msgspec.Struct], record: msgspec.Struct, field: str, raw: bytes
) -> None:
    fields = as_redis_reply(codec.encode_record(record))
    fields[field.encode()] = raw
    with pytest.raises(CorruptRecordError) as info:
        codec.decode_record(cls, KEY, fields)
    assert info.value.key == KEY
    assert field in str(info.value)


def _stored_task_record(**overrides: bytes) -> dict[bytes, bytes]:
    """A task hash as save.lua and claim.lua leave it."""
    fields = as_redis_reply(codec.encode_record(make_task()))
    fields.update(
        {
            b"status": b"processing",
            b"seq": b"1",
            b"attempts": b"1",
            b"owner": b"replica-a",
            b"token": b"42",
            b"lease_until": b"1767323050678",
            b"created_at": b"1767323045678",
            b"updated_at": b"1767323045679",
        }
    )
    fields.update({name.encode(): value for name, value in overrides.items()})
    return fields


def test_task_record_decodes_state_fields() -> None:
    record = codec.decode_task_record(KEY, _stored_task_record())
    assert record.task == make_task()
    assert record.status is TaskStatus.PROCESSING
    assert (record.attempts, record.owner, record.token) == (1, "replica-a", 42)
    assert record.lease_until == T0 + timedelta(seconds=5)
    assert record.created_at == T0
    assert record.last_error is None


def test_pending_task_record_has_no_lease() -> None:
    fields = _stored_task_record(status=b"pending", attempts=b"0")
    for name in (b"owner", b"token", b"lease_until"):
        del fields[name]
    record = codec.decode_task_record(KEY, fields)
    assert record.status is TaskStatus.PENDING
    assert record.attempts == 0
    assert (record.owner, record.token, record.lease_until) == (None, None, None)


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("attempts", b"abc"),
        ("attempts", None),
        ("created_at", None),
        ("updated_at", b"x"),
        ("token", b"1e3"),
        ("lease_until", b"later"),
        ("status", b"bogus"),
        ("status", None),
        ("chain_id", None),
    ],
)
def test_corrupt_task_record_names_the_key(field: str, raw: bytes | None) -> None:
    fields = _stored_task_record()
    if raw is None:
        del fields[field.encode()]
    else:
        fields[field.encode()] = raw
    with pytest.raises(CorruptRecordError) as info:
        codec.decode_task_record(KEY, fields)
    assert info.value.key == KEY
    assert field in str(info.value)


def test_corrupt_record_error_is_a_storage_error() -> None:
    assert issubclass(CorruptRecordError, PonosStorageError)


# -- script replies ------------------------------------------------------------------


@pytest.mark.parametrize("code", [b"OK", "OK"])
def test_check_returns_the_tail_on_ok(code: bytes | str) -> None:
    assert check([code], "task 'x'") == []
    assert check([code, b"REPLAY"], "task 'x'") == [b"REPLAY"]
    assert check([code, 5, [b"a", b"b"]], "task 'x'") == [5, [b"a", b"b"]]


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        ([b"NOTFOUND"], NotFoundError, "not found"),
        (["NOTFOUND"], NotFoundError, "not found"),
        ([b"STALE", b"17"], StaleLeaseError, "17"),
        ([b"STALE", b""], StaleLeaseError, "no longer current"),
        ([b"TRANSITION", b"completed"], InvalidTransitionError, "completed"),
        ([b"EXISTS", b"t-1"], AlreadyExistsError, "t-1"),
    ],
)
def test_check_maps_each_code_to_its_error(reply: list[Any], error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        check(reply, "task 't-1'")
    assert text in str(info.value)


@pytest.mark.parametrize("reply", [[b"WHAT", b"x"], [], None, 1, b"OK"])
def test_check_refuses_an_unexpected_reply(reply: Any) -> None:
    with pytest.raises(PonosStorageError) as info:
        check(reply, "task 't-1'")
    assert type(info.value) is PonosStorageError
    assert "task 't-1'" in str(info.value)
