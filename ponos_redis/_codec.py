"""Records <-> Redis hash fields: pure functions, no I/O.

Hash field names are the model's field names. Values are plain text a person
can read in ``redis-cli``: integers and floats in decimal, datetimes as epoch
milliseconds, booleans as ``true`` / ``false``, enums by value, lists and
nested records as JSON; only ``bytes`` fields (payload, metadata) are raw.
An optional datetime that is None is stored as an empty string. Anything that
does not decode raises :class:`CorruptRecordError` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from . import _validate as v
from .errors import CorruptRecordError
from .models import BlockRecord, StoreEvent, Task, TaskRecord, TaskStatus

__all__ = [
    "TASK_FIELDS",
    "decode_block",
    "decode_event",
    "decode_record",
    "decode_task",
    "decode_task_record",
    "encode_block",
    "encode_record",
    "encode_task",
    "text",
]

T = TypeVar("T", bound=msgspec.Struct)

_json_encoder = msgspec.json.Encoder()
_TYPE_INFO: dict[type, mi.StructType] = {}


def _info(cls: type) -> mi.StructType:
    info = _TYPE_INFO.get(cls)
    if info is None:
        found = mi.type_info(cls)
        assert isinstance(found, mi.StructType)
        info = _TYPE_INFO[cls] = found
    return info


def _is_optional_datetime(t: mi.Type) -> bool:
    return isinstance(t, mi.UnionType) and any(isinstance(x, mi.DateTimeType) for x in t.types)


def _encode_value(t: mi.Type, value: Any) -> bytes | str:
    if isinstance(t, mi.BytesType):
        assert isinstance(value, bytes)
        return value
    if isinstance(t, mi.DateTimeType) or _is_optional_datetime(t):
        return "" if value is None else str(v.to_ms(value))
    if isinstance(t, mi.BoolType):
        return "true" if value else "false"
    if isinstance(t, mi.EnumType):
        return str(value.value)
    if isinstance(t, mi.StrType):
        assert isinstance(value, str)
        return value
    if isinstance(t, mi.IntType):
        return str(int(value))
    if isinstance(t, mi.FloatType):
        return repr(float(value))
    return _json_encoder.encode(value).decode()


def text(raw: bytes | str, key: str, field: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptRecordError(key, f"field {field!r} is not UTF-8") from None


def _decode_value(t: mi.Type, raw: bytes | str, key: str, field: str) -> Any:
    if isinstance(t, mi.BytesType):
        return raw if isinstance(raw, bytes) else raw.encode()
    s = text(raw, key, field)
    try:
        if isinstance(t, mi.DateTimeType):
            return v.from_ms(int(s))
        if _is_optional_datetime(t):
            return None if s == "" else v.from_ms(int(s))
        if isinstance(t, mi.BoolType):
            if s not in ("true", "false"):
                raise ValueError(f"not a bool: {s!r}")
            return s == "true"
        if isinstance(t, mi.EnumType):
            return t.cls(int(s) if issubclass(t.cls, int) else s)
        if isinstance(t, mi.StrType):
            return s
        if isinstance(t, mi.IntType):
            return int(s)
        if isinstance(t, mi.FloatType):
            return float(s)
        return msgspec.json.decode(s, type=_python_type(t))
    except (ValueError, TypeError, OverflowError, msgspec.DecodeError) as exc:
        raise CorruptRecordError(key, f"field {field!r}: {exc}") from None


def _python_type(t: mi.Type) -> Any:
    if isinstance(t, mi.ListType):
        return list[_python_type(t.item_type)]  # type: ignore[misc,unused-ignore]
    if isinstance(t, mi.StructType):
        return t.cls
    if isinstance(t, mi.IntType):
        return int
    raise TypeError(f"no codec for {t!r}")


def encode_record(record: msgspec.Struct, *, exclude: frozenset[str] = frozenset()) -> dict[str, bytes | str]:
    """A record as hash fields (every field present)."""
    return {
        f.name: _encode_value(f.type, getattr(record, f.name))
        for f in _info(type(record)).fields
        if f.name not in exclude
    }


def _get(fields: Mapping[Any, Any], name: str) -> bytes | str | None:
    value: bytes | str | None = fields.get(name.encode())
    if value is None:
        value = fields.get(name)
    return value


def _str(raw: bytes | str) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def _fast_decoder(t: mi.Type) -> Callable[[Any], Any] | None:
    """A one-step decoder for the common field types, prepared once per record type;
    None where the general :func:`_decode_value` decides. Each raises ValueError (or
    UnicodeDecodeError) on a bad value, which the caller reports as corrupt."""
    if isinstance(t, mi.BytesType):
        return lambda raw: raw if isinstance(raw, bytes) else raw.encode()
    if isinstance(t, mi.StrType):
        return _str
    if isinstance(t, mi.IntType):
        return lambda raw: int(_str(raw))
    if _is_optional_datetime(t):
        return lambda raw: None if raw in (b"", "") else v.from_ms(int(_str(raw)))
    if isinstance(t, mi.DateTimeType):
        return lambda raw: v.from_ms(int(_str(raw)))
    return None


_Plan = tuple[tuple[str, bytes, mi.Type, Callable[[Any], Any] | None], ...]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """Per field of ``cls``: its name as text and bytes, its type and its fast decoder."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple(
            (f.name, f.name.encode(), f.type, _fast_decoder(f.type)) for f in _info(cls).fields
        )
    return plan


def decode_record(cls: type[T], key: str, fields: Mapping[Any, Any]) -> T:
    """Decode hash fields (bytes or str keys) into ``cls``; missing or bad fields are corrupt."""
    values: dict[str, Any] = {}
    for name, name_bytes, t, fast in _plan(cls):
        raw = fields.get(name_bytes)
        if raw is None:
            raw = fields.get(name)
            if raw is None:
                raise CorruptRecordError(key, f"field {name!r} is missing")
        if fast is None:
            values[name] = _decode_value(t, raw, key, name)
            continue
        try:
            values[name] = fast(raw)
        except UnicodeDecodeError:
            raise CorruptRecordError(key, f"field {name!r} is not UTF-8") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise CorruptRecordError(key, f"field {name!r}: {exc}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(key, str(exc)) from None


# -- tasks -------------------------------------------------------------------------

TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in _info(Task).fields)


def encode_task(task: Task) -> list[bytes | str]:
    """The task's hash values in ``TASK_FIELDS`` order (what save.lua writes and compares)."""
    encoded = encode_record(task)
    return [encoded[name] for name in TASK_FIELDS]


def decode_task(key: str, fields: Mapping[Any, Any]) -> Task:
    return decode_record(Task, key, fields)


def _optional_int(key: str, fields: Mapping[Any, Any], name: str) -> int | None:
    raw = _get(fields, name)
    if raw is None or raw in (b"", ""):
        return None
    try:
        return int(text(raw, key, name))
    except ValueError:
        raise CorruptRecordError(key, f"field {name!r} is not an integer") from None


def _required_int(key: str, fields: Mapping[Any, Any], name: str) -> int:
    value = _optional_int(key, fields, name)
    if value is None:
        raise CorruptRecordError(key, f"field {name!r} is missing")
    return value


def _optional_text(key: str, fields: Mapping[Any, Any], name: str) -> str | None:
    raw = _get(fields, name)
    return None if raw is None else text(raw, key, name)


def decode_task_record(key: str, fields: Mapping[Any, Any]) -> TaskRecord:
    task = decode_task(key, fields)
    status_text = _optional_text(key, fields, "status")
    try:
        status = TaskStatus(status_text or "")
    except ValueError:
        raise CorruptRecordError(key, f"field 'status' is {status_text!r}") from None
    lease_ms = _optional_int(key, fields, "lease_until")
    return TaskRecord(
        task=task,
        status=status,
        attempts=_required_int(key, fields, "attempts"),
        owner=_optional_text(key, fields, "owner"),
        token=_optional_int(key, fields, "token"),
        lease_until=None if lease_ms is None else v.from_ms(lease_ms),
        created_at=v.from_ms(_required_int(key, fields, "created_at")),
        updated_at=v.from_ms(_required_int(key, fields, "updated_at")),
        last_error=_optional_text(key, fields, "last_error"),
    )


# -- blocks and events -------------------------------------------------------------


class _BlockBody(msgspec.Struct, frozen=True):
    hash: str
    parent_hash: str
    timestamp: int


def encode_block(record: BlockRecord) -> bytes:
    return _json_encoder.encode(
        _BlockBody(hash=record.hash, parent_hash=record.parent_hash, timestamp=record.timestamp)
    )


def decode_block(key: str, chain_id: int, number: int, raw: bytes) -> BlockRecord:
    try:
        body = msgspec.json.decode(raw, type=_BlockBody)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(key, f"block {number}: {exc}") from None
    return BlockRecord(
        chain_id=chain_id,
        number=number,
        hash=body.hash,
        parent_hash=body.parent_hash,
        timestamp=body.timestamp,
    )


def decode_event(key: str, event_id: bytes | str, fields: Mapping[Any, Any]) -> StoreEvent:
    eid = text(event_id, key, "id")
    kind = _optional_text(key, fields, "kind")
    subject = _optional_text(key, fields, "subject")
    at = _optional_int(key, fields, "at")
    if kind is None or subject is None or at is None:
        raise CorruptRecordError(key, f"event {eid} lacks kind, subject or at")
    return StoreEvent(
        id=eid,
        kind=kind,
        subject=subject,
        status=_optional_text(key, fields, "status"),
        owner=_optional_text(key, fields, "owner"),
        token=_optional_int(key, fields, "token"),
        at=v.from_ms(at),
    )


def ms(value: datetime) -> str:
    return str(v.to_ms(value))
