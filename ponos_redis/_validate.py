"""Input validation and normalisation, shared by every backend.

A store validates everything a call was given before it writes anything, so
bad input raises :class:`InvalidInputError` and never leaves a partial write.
Normalising (lower-cased addresses, UTC datetimes truncated to milliseconds)
happens here too, so both backends store and compare exactly the same values.

Every string must be encodable as UTF-8 (a lone surrogate such as ``"\\ud800"``
is refused) and has a bound, counted in characters (``len(s)``). Bad or
oversized values raise ``InvalidInputError`` and nothing is written.

======================  ======  ===========================================================
Constant                Bound   Fields
======================  ======  ===========================================================
``MAX_ID_CHARS``        1-256   ids (task, performer, deployment, inflight task), owners
``MAX_HASH_CHARS``      256     ``Task.block_hash``, ``BlockRecord.hash``, ``parent_hash``
``MAX_ADDRESS_CHARS``   256     ``Task.callback_address``, ``InflightTask.aggregator_address``
``MAX_TEXT_CHARS``      4096    the ``fail_task`` reason, ``Deployment.error``, the ``error``
                                of ``update_deployment_status``
``MAX_FIELD_CHARS``     1024    ``PerformerState.resource_id``, ``status``,
                                ``artifact_registry``, ``artifact_digest``, ``artifact_tag``,
                                ``deployment_mode``, ``network_name``, ``container_endpoint``,
                                ``container_hostname``; ``Deployment.artifact_registry``,
                                ``artifact_digest``
``MAX_STATUS_CHARS``    256     ``InflightTask.status``
``MAX_ENV_NAME_CHARS``  256     ``EnvironmentVar.name``, ``value_from_env``
``MAX_ENV_VALUE_CHARS`` 32768   ``EnvironmentVar.value``
``MAX_ENV_VARS``        1024    entries of ``PerformerState.environment_vars``
``MAX_URL_CHARS``       4096    ``redis.url`` of the config (checked when it is built)
======================  ======  ===========================================================

The task payload and an operator set's ``task_metadata`` are bounded in bytes
by ``tasks.max_payload_bytes`` (1 MiB by default). Datetimes must be aware and
stay within years 1-9999 once converted to UTC.
"""

from __future__ import annotations

import math
import re
import reprlib
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .errors import InvalidInputError
from .models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    Consensus,
    ConsensusType,
    CurveType,
    Deployment,
    DeploymentStatus,
    EnvironmentVar,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    Task,
    TaskStatus,
)

MAX_INT = 2**53

# The bounds of string fields, in characters (see the table above).
MAX_ID_CHARS = 256
MAX_HASH_CHARS = 256
MAX_ADDRESS_CHARS = 256
MAX_TEXT_CHARS = 4096
MAX_FIELD_CHARS = 1024
MAX_STATUS_CHARS = 256
MAX_ENV_NAME_CHARS = 256
MAX_ENV_VALUE_CHARS = 32 * 1024
MAX_ENV_VARS = 1024
MAX_URL_CHARS = 4096  # redis.url of the config

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ADDRESS_RE = re.compile(r"0[xX][0-9a-fA-F]{40}")
# Whitespace and control characters (C0, DEL, C1, and Unicode separators).
_BAD_ID_CHAR_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\u200b\ufeff]")


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlong = 40


def show(value: object) -> str:
    """A refused value as an error message quotes it: at most about 80 characters, and never
    an error of its own (``repr`` of an int of more than 4300 digits raises ValueError)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**128:
        return f"an integer of {value.bit_length()} bits"
    try:
        return _SHOW.repr(value)
    except ValueError:  # an int too long for decimal digits, inside a container
        return f"a {type(value).__name__} holding an integer too long to show"


def namespace(value: object) -> str:
    if not isinstance(value, str) or not _NAMESPACE_RE.fullmatch(value):
        raise InvalidInputError(f"namespace must match [A-Za-z0-9_.-]{{1,64}}, got {show(value)}")
    return value


def _utf8(value: str, what: str) -> None:
    """Refuse a string that cannot be encoded as UTF-8 (it holds a lone surrogate)."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid text: it holds a lone surrogate (at index {exc.start}), "
            "which cannot be encoded as UTF-8"
        ) from None


def ident(value: object, what: str = "id") -> str:
    """An id: 1-256 characters, no whitespace or control characters, valid UTF-8.

    Args:
        value: the id to check.
        what: the name of the field, for the error message.

    Raises:
        InvalidInputError: it is not a string, is empty or too long, holds whitespace, a
            control character or a lone surrogate.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise InvalidInputError(f"{what} must be 1-{MAX_ID_CHARS} characters, got {len(value)}")
    _utf8(value, what)
    if _BAD_ID_CHAR_RE.search(value):
        raise InvalidInputError(f"{what} must not contain whitespace or control characters: {show(value)}")
    return value


def ids(values: object, what: str, max_count: int) -> list[str]:
    """A collection of ids (not one string): at most ``max_count``, each an :func:`ident`.

    Args:
        values: the ids to check (a list, set, tuple ...).
        what: the name of the argument, for the error message.
        max_count: how many ids it may hold.

    Returns:
        the ids in their order, duplicates dropped.

    Raises:
        InvalidInputError: it is a string or not iterable, holds more than ``max_count``
            ids, or an id is invalid.
    """
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise InvalidInputError(f"{what} must be a collection of ids, got {type(values).__name__}")
    seen: dict[str, None] = {}
    for n, item in enumerate(values):
        if n >= max_count:
            raise InvalidInputError(f"{what} must hold at most {max_count} ids")
        seen[ident(item, f"{what}[{n}]")] = None
    return list(seen)


def address(value: object, what: str = "address") -> str:
    """An EVM address: 0x + 40 hex digits, returned lower-cased."""
    if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value):
        raise InvalidInputError(f"{what} must be 0x followed by 40 hex digits, got {show(value)}")
    return value.lower()


def integer(value: object, what: str) -> int:
    """An integer 0 <= n < 2**53 (exact in a Lua number)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value < MAX_INT:
        raise InvalidInputError(f"{what} must be 0 <= n < 2**53, got {show(value)}")
    return int(value)


def token(value: object, what: str = "token") -> int:
    """A fencing token (of a task or a chain lease, or a fence): an integer
    0 <= n < 2**53, as the scripts issue them; the same check on both backends."""
    return integer(value, what)


def chain_lease(value: object) -> ChainLease:
    """A lease given back to renew or release it: a ChainLease whose chain id,
    owner and token are well-formed (its ``expires_at`` is not consulted)."""
    _struct(value, ChainLease, "lease")
    assert isinstance(value, ChainLease)
    integer(value.chain_id, "lease.chain_id")
    ident(value.owner, "lease.owner")
    token(value.token, "lease.token")
    return value


def string(value: object, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A free-form string of at most ``max_chars`` characters, valid UTF-8.

    Args:
        value: the string to check.
        what: the name of the field, for the error message.
        max_chars: the bound (default ``MAX_TEXT_CHARS``, the bound of reasons and errors).

    Raises:
        InvalidInputError: it is not a string, is longer than ``max_chars`` or holds a lone
            surrogate.
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidInputError(f"{what} must be at most {max_chars} characters, got {len(value)}")
    _utf8(value, what)
    return value


def boolean(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{what} must be a bool, got {type(value).__name__}")
    return value


def duration(value: object, what: str, *, allow_zero: bool = False) -> float:
    """A duration in float seconds: finite and positive (or zero when allowed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number of seconds, got {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond every float (10**400): infinite as far as this goes
        seconds = math.inf if value > 0 else -math.inf
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{what} must be finite and {bound}, got {show(value)}")
    if seconds > 10 * 365 * 86400:
        raise InvalidInputError(f"{what} must be at most ten years, got {show(value)}")
    return seconds


def limit(value: object, what: str = "limit") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{what} must be a non-negative integer, got {show(value)}")
    return min(int(value), 1_000_000)


def timestamp(value: object, what: str) -> datetime:
    """An aware datetime, converted to UTC and truncated to milliseconds.

    Every value it returns is within years 1-9999 UTC, so :func:`to_ms` and
    :func:`from_ms` round-trip it exactly.

    Args:
        value: the datetime to check.
        what: the name of the field, for the error message.

    Raises:
        InvalidInputError: it is not a datetime, is naive, or falls outside years 1-9999
            once converted to UTC (``datetime(9999, 12, 31, 23, tzinfo=UTC-5)`` does).
    """
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidInputError(f"{what} must be timezone-aware, got a naive datetime")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError(
            f"{what} is out of range: {value.isoformat()} falls outside years 1-9999 in UTC"
        ) from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def optional_timestamp(value: object, what: str) -> datetime | None:
    return None if value is None else timestamp(value, what)


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return (value - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The UTC datetime ``ms`` milliseconds after the epoch (exact, on every platform).

    Raises:
        OverflowError: it falls outside years 1-9999 (never for a value of :func:`to_ms`
            of a validated :func:`timestamp`).
    """
    return _EPOCH + timedelta(milliseconds=ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def payload(value: object, max_bytes: int, what: str = "payload") -> bytes:
    if not isinstance(value, bytes):
        raise InvalidInputError(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) > max_bytes:
        raise InvalidInputError(f"{what} is {len(value)} bytes, over the limit of {max_bytes}")
    return value


def task_status(value: object) -> TaskStatus:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return TaskStatus(value)
    except ValueError:
        raise InvalidInputError(
            f"status must be one of {[s.value for s in TaskStatus]}, got {show(value)}"
        ) from None


def deployment_status(value: object) -> DeploymentStatus:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return DeploymentStatus(value)
    except ValueError:
        raise InvalidInputError(
            f"deployment status must be one of {[s.value for s in DeploymentStatus]}, got {show(value)}"
        ) from None


def _enum(cls: Any, value: object, what: str) -> Any:
    """A member of ``cls``, given as a member or its value, of the value's own type: an int
    enum takes an int (not a bool, nor a float equal to one), a str enum a str."""
    base = int if issubclass(cls, int) else str
    try:
        if isinstance(value, bool) or not isinstance(value, base):
            raise ValueError(value)
        return cls(value)
    except ValueError:
        raise InvalidInputError(
            f"{what} must be one of {[m.value for m in cls]}, got {show(value)}"
        ) from None


def _struct(value: object, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        raise InvalidInputError(f"{what} must be a {cls.__name__}, got {type(value).__name__}")


def task(value: object, max_payload_bytes: int) -> Task:
    """Validate a task; return it normalised (lower-cased address, UTC ms deadline)."""
    _struct(value, Task, "task")
    assert isinstance(value, Task)
    return msgspec.structs.replace(
        value,
        task_id=ident(value.task_id, "task_id"),
        avs_address=address(value.avs_address, "avs_address"),
        operator_set_id=integer(value.operator_set_id, "operator_set_id"),
        chain_id=integer(value.chain_id, "chain_id"),
        block_number=integer(value.block_number, "block_number"),
        block_hash=string(value.block_hash, "block_hash", MAX_HASH_CHARS),
        callback_address=string(value.callback_address, "callback_address", MAX_ADDRESS_CHARS),
        deadline=optional_timestamp(value.deadline, "deadline"),
        threshold_bips=integer(value.threshold_bips, "threshold_bips"),
        payload=payload(value.payload, max_payload_bytes),
    )


def tasks(values: object, max_payload_bytes: int) -> list[Task]:
    """Validate a batch; identical duplicates collapse, different ones raise."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise InvalidInputError("tasks must be an iterable of Task")
    seen: dict[str, Task] = {}
    for item in values:
        normal = task(item, max_payload_bytes)
        previous = seen.get(normal.task_id)
        if previous is not None and previous != normal:
            raise InvalidInputError(f"two different tasks with id {normal.task_id!r} in one batch")
        seen.setdefault(normal.task_id, normal)
    return list(seen.values())


def block(value: object) -> BlockRecord:
    _struct(value, BlockRecord, "block record")
    assert isinstance(value, BlockRecord)
    return BlockRecord(
        chain_id=integer(value.chain_id, "chain_id"),
        number=integer(value.number, "number"),
        hash=string(value.hash, "hash", MAX_HASH_CHARS),
        parent_hash=string(value.parent_hash, "parent_hash", MAX_HASH_CHARS),
        timestamp=integer(value.timestamp, "timestamp"),
    )


def operator_set_config(value: object, max_bytes: int) -> OperatorSetTaskConfig:
    _struct(value, OperatorSetTaskConfig, "config")
    assert isinstance(value, OperatorSetTaskConfig)
    _struct(value.consensus, Consensus, "consensus")
    return OperatorSetTaskConfig(
        task_sla_s=duration(value.task_sla_s, "task_sla_s", allow_zero=True),
        curve_type=_enum(CurveType, value.curve_type, "curve_type"),
        task_metadata=payload(value.task_metadata, max_bytes, "task_metadata"),
        consensus=Consensus(
            type=_enum(ConsensusType, value.consensus.type, "consensus.type"),
            threshold=integer(value.consensus.threshold, "consensus.threshold"),
        ),
    )


def avs_config(value: object) -> AvsConfig:
    _struct(value, AvsConfig, "config")
    assert isinstance(value, AvsConfig)
    ids = value.executor_operator_set_ids
    if not isinstance(ids, list | tuple):
        raise InvalidInputError("executor_operator_set_ids must be a list of integers")
    return AvsConfig(
        aggregator_operator_set_id=integer(value.aggregator_operator_set_id, "aggregator_operator_set_id"),
        executor_operator_set_ids=[integer(i, "executor_operator_set_ids[]") for i in ids],
        curve_type=_enum(CurveType, value.curve_type, "curve_type"),
    )


def performer(value: object) -> PerformerState:
    _struct(value, PerformerState, "performer state")
    assert isinstance(value, PerformerState)
    env = value.environment_vars
    if not isinstance(env, list | tuple):
        raise InvalidInputError("environment_vars must be a list of EnvironmentVar")
    if len(env) > MAX_ENV_VARS:
        raise InvalidInputError(f"environment_vars must have at most {MAX_ENV_VARS} entries, got {len(env)}")
    for var in env:
        _struct(var, EnvironmentVar, "environment_vars[]")
    return msgspec.structs.replace(
        value,
        performer_id=ident(value.performer_id, "performer_id"),
        avs_address=address(value.avs_address, "avs_address"),
        resource_id=string(value.resource_id, "resource_id", MAX_FIELD_CHARS),
        status=string(value.status, "status", MAX_FIELD_CHARS),
        artifact_registry=string(value.artifact_registry, "artifact_registry", MAX_FIELD_CHARS),
        artifact_digest=string(value.artifact_digest, "artifact_digest", MAX_FIELD_CHARS),
        artifact_tag=string(value.artifact_tag, "artifact_tag", MAX_FIELD_CHARS),
        deployment_mode=string(value.deployment_mode, "deployment_mode", MAX_FIELD_CHARS),
        created_at=timestamp(value.created_at, "created_at"),
        last_health_check=optional_timestamp(value.last_health_check, "last_health_check"),
        container_healthy=boolean(value.container_healthy, "container_healthy"),
        application_healthy=boolean(value.application_healthy, "application_healthy"),
        network_name=string(value.network_name, "network_name", MAX_FIELD_CHARS),
        container_endpoint=string(value.container_endpoint, "container_endpoint", MAX_FIELD_CHARS),
        container_hostname=string(value.container_hostname, "container_hostname", MAX_FIELD_CHARS),
        environment_vars=[
            EnvironmentVar(
                name=string(v.name, "environment_vars[].name", MAX_ENV_NAME_CHARS),
                value=string(v.value, "environment_vars[].value", MAX_ENV_VALUE_CHARS),
                value_from_env=string(
                    v.value_from_env, "environment_vars[].value_from_env", MAX_ENV_NAME_CHARS
                ),
            )
            for v in env
        ],
    )


def inflight(value: object) -> InflightTask:
    _struct(value, InflightTask, "inflight task")
    assert isinstance(value, InflightTask)
    return InflightTask(
        task_id=ident(value.task_id, "task_id"),
        avs_address=address(value.avs_address, "avs_address"),
        operator_address=address(value.operator_address, "operator_address"),
        received_at=timestamp(value.received_at, "received_at"),
        status=string(value.status, "status", MAX_STATUS_CHARS),
        aggregator_address=string(value.aggregator_address, "aggregator_address", MAX_ADDRESS_CHARS),
        operator_set_id=integer(value.operator_set_id, "operator_set_id"),
    )


def deployment(value: object) -> Deployment:
    _struct(value, Deployment, "deployment")
    assert isinstance(value, Deployment)
    return Deployment(
        deployment_id=ident(value.deployment_id, "deployment_id"),
        avs_address=address(value.avs_address, "avs_address"),
        artifact_registry=string(value.artifact_registry, "artifact_registry", MAX_FIELD_CHARS),
        artifact_digest=string(value.artifact_digest, "artifact_digest", MAX_FIELD_CHARS),
        status=deployment_status(value.status),
        started_at=timestamp(value.started_at, "started_at"),
        completed_at=optional_timestamp(value.completed_at, "completed_at"),
        error=string(value.error, "error", MAX_TEXT_CHARS),
    )
