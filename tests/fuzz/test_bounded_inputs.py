"""Every public store method, fed values out of bounds: InvalidInputError, and nothing written.

The methods are enumerated from the two Protocols (``ponos_redis.interfaces``). Each
parameter of each method has the values the contract refuses (``SPECS``), and so has each
field of each record a parameter takes (``RECORD_FIELDS``): a method, parameter or field
without them fails ``test_every_method_parameter_and_field_has_a_fuzz_strategy``.

One namespace per backend (the fake, and Redis on the suite's private server) is seeded
with something of everything: a task in each status, a chain cursor, block records, a
live chain lease, a runner lease, configs, a performer, an inflight task, a deployment, a
de-dup marker. A call gets some arguments out of bounds and the others good: values the
call accepts and, for a write, acts on (the processing task's current token, the live
lease, tasks past retention ...), so a missing check would show as a change.
``test_good_call_is_accepted_and_a_write_shows_in_the_snapshot`` holds the good values to
that. Each call with a value out of bounds must raise ``InvalidInputError`` (never
``TypeError``, a bare ``ValueError``, ``OverflowError``, ``KeyError``, a Redis or Lua
error), and the namespace must be unchanged, compared in full: on Redis every key of the
namespace with its type, its expiry and its whole contents (hash fields, sorted-set members
with scores, stream entries and stream metadata, strings); on the fake the whole state of
the namespace.

Every listed value of every kind is tried at every parameter and record field it applies
to (``test_every_listed_out_of_bounds_value_is_refused``); Hypothesis adds generated ones and
several bad arguments at once (``test_out_of_bounds_input_raises_invalid_input_and_writes_nothing``).
Kinds: numbers (negative, 2**53 and above, 10**400, NaN, inf, floats and bools where ints
are expected, zero or over ten years for durations), strings (empty, over their bound, a
million characters, NUL, control and whitespace characters in ids, lone surrogates), bytes
over ``max_payload_bytes``, naive datetimes and datetimes outside years 1-9999 in UTC,
unknown statuses and enum values, malformed event ids, collections over their bound, and
wrong types (None, bytes for str, str for bytes, lists, dicts, a record of another type).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import itertools
import math
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponos_redis import (
    AggregatorStore,
    AvsConfig,
    BlockRecord,
    ChainLease,
    Consensus,
    CurveType,
    Deployment,
    DeploymentStatus,
    EnvironmentVar,
    ExecutorStore,
    InflightTask,
    InvalidInputError,
    ManualClock,
    OperatorSetTaskConfig,
    PerformerState,
    StorageConfig,
    Task,
    TaskStatus,
)
from ponos_redis import _validate as v
from ponos_redis.backends import memory
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.keys import Keys
from ponos_redis.testing import make_deployment, make_inflight, make_performer, make_task

BACKENDS = ["memory", "redis"]
PROTOCOLS: dict[str, type] = {"AggregatorStore": AggregatorStore, "ExecutorStore": ExecutorStore}
MAX_PAYLOAD = 1024
RETENTION_S = 60
AVS = "0x" + "ab" * 20
AVS_B = "0x" + "cd" * 20
TEN_YEARS = 10 * 365 * 86400
LONG_LEASE_S = 30 * 86400
# Hypothesis examples per method: a quarter of the profile's (25 by default, 250 nightly).
EXAMPLES_PER_METHOD = max(10, settings.default.max_examples // 4)

# Every async test here runs in the loop of the module, where the seeded stores live.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

# ------------------------------------------------------------------ values out of bounds


@dataclasses.dataclass(frozen=True)
class Bad:
    """Values a parameter or field must refuse: listed ones, each tried every run, and
    generated ones, drawn by Hypothesis."""

    listed: tuple[Any, ...]
    generated: st.SearchStrategy[Any] | None = None

    def strategy(self) -> st.SearchStrategy[Any]:
        parts = [st.sampled_from(self.listed)]
        return st.one_of(*parts, self.generated) if self.generated is not None else parts[0]

    def __add__(self, other: Bad) -> Bad:
        generated = [g for g in (self.generated, other.generated) if g is not None]
        return Bad(self.listed + other.listed, st.one_of(*generated) if generated else None)


def spliced(chars: list[str]) -> st.SearchStrategy[str]:
    """Some text with one of ``chars`` put in at a random place."""
    return st.builds(
        lambda a, c, b: a + c + b, st.text(max_size=6), st.sampled_from(chars), st.text(max_size=6)
    )


SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
# Whitespace and control characters: never in an id.
BAD_ID_CHARS = [
    *" \t\n\r\x0b\x0c\x00\x01\x1b\x1f\x7f\x80\x85\x9f\xa0",
    "\u1680",
    "\u2000",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u3000",
    "\ufeff",
]
MILLION = "x" * 1_000_000
NOT_STR = (
    None,
    b"t1",
    bytearray(b"t1"),
    0,
    1,
    1.5,
    math.nan,
    True,
    False,
    ["t1"],
    ("t1",),
    {"t1": 1},
    {"t1"},
)


def over(bound: int) -> Bad:
    """Strings longer than ``bound`` characters (of one and of two UTF-8 bytes)."""
    return Bad(
        ("a" * (bound + 1), "é" * (bound + 1), MILLION),
        st.integers(bound + 1, bound + 40).map(lambda n: "a" * n),
    )


BAD_IDS = over(v.MAX_ID_CHARS) + Bad(
    ("", *SURROGATES, "ok\ud800", *BAD_ID_CHARS, "a b", "a\x00b", "t1\n", *NOT_STR),
    spliced(BAD_ID_CHARS + SURROGATES),
)


def bad_text(bound: int) -> Bad:
    """Free text: any character is allowed, but not a lone surrogate, nor over ``bound``."""
    return over(bound) + Bad(("ok\ud800", *SURROGATES, *NOT_STR), spliced(SURROGATES))


_ADDRESS_RE = re.compile(r"0[xX][0-9a-fA-F]{40}")
BAD_ADDRESSES_NOT_NONE = Bad(
    (
        "",
        "0x",
        "0x" + "ab" * 19,
        "0x" + "ab" * 21,
        "0x" + "ag" * 20,
        "ab" * 21,
        "1x" + "ab" * 20,
        " 0x" + "ab" * 20,
        "0x" + "ab" * 20 + "\n",
        "0x" + "ab" * 20 + "\x00",
        "0x" + "ab" * 19 + "\ud800a",
        "0x" + "ab" * 500_000,
        AVS.encode(),
        int(AVS, 16),
        [AVS],
        {"address": AVS},
        1.5,
        True,
    ),
    st.text(max_size=44).filter(lambda s: not _ADDRESS_RE.fullmatch(s)),
)
BAD_ADDRESSES = BAD_ADDRESSES_NOT_NONE + Bad((None,))

# Integers of the contract are 0 <= n < 2**53, and exactly int (not bool, not float).
# 10**5000 has more decimal digits than repr() writes (sys.get_int_max_str_digits()).
HUGE = 10**5000
NOT_INT: tuple[Any, ...] = ("1", "", b"1", [1], [HUGE], {1: 1}, Decimal(1), 1j)
BAD_INTS_NOT_NONE = Bad(
    (
        -1,
        -(2**63),
        2**53,
        2**64,
        10**400,
        -(10**400),
        HUGE,
        -HUGE,
        1.0,
        0.0,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        *NOT_INT,
    ),
    st.one_of(st.integers(max_value=-1), st.integers(min_value=2**53), st.floats()),
)
BAD_INTS = BAD_INTS_NOT_NONE + Bad((None,))


def bad_durations(*, allow_zero: bool, allow_none: bool) -> Bad:
    """Seconds: finite, positive (or zero when allowed), at most ten years, int or float."""
    listed: tuple[Any, ...] = (-1, -0.5, -math.inf, math.inf, math.nan, TEN_YEARS + 1, TEN_YEARS + 0.5)
    listed += (
        10**400,
        -(10**400),
        HUGE,
        -HUGE,
        2**1024,
        [HUGE],
        True,
        False,
        "5",
        b"5",
        [5],
        timedelta(seconds=5),
        Decimal(5),
    )
    listed += () if allow_zero else (0, 0.0, -0.0)
    listed += () if allow_none else (None,)
    return Bad(
        listed,
        st.one_of(
            st.floats(max_value=0).filter(lambda f: f < 0 or not allow_zero),
            st.integers(max_value=-1 if allow_zero else 0),
            st.floats(min_value=TEN_YEARS, exclude_min=True),
            st.integers(min_value=TEN_YEARS + 1),
        ),
    )


def bad_limits(*, allow_none: bool) -> Bad:
    listed: tuple[Any, ...] = (
        -1,
        -(10**400),
        -HUGE,
        [HUGE],
        1.0,
        math.nan,
        math.inf,
        True,
        False,
        "1",
        b"1",
        [1],
    )
    return Bad(
        listed + (() if allow_none else (None,)),
        st.one_of(st.integers(max_value=-1), st.floats()),
    )


def bad_bytes(bound: int) -> Bad:
    return Bad(
        (
            b"\x00" * (bound + 1),
            b"x" * 2**21,
            "text",
            "",
            bytearray(b"ab"),
            memoryview(b"ab"),
            None,
            1,
            [1, 2],
        ),
        st.integers(bound + 1, bound + 40).map(lambda n: b"\x00" * n),
    )


MINUS_5 = timezone(-timedelta(hours=5))
PLUS_5 = timezone(timedelta(hours=5))
MINUS_2359 = timezone(-timedelta(hours=23, minutes=59))
PLUS_2359 = timezone(timedelta(hours=23, minutes=59))


def bad_datetimes(*, allow_none: bool) -> Bad:
    """Naive datetimes, aware ones outside years 1-9999 once in UTC, and other types."""
    listed: tuple[Any, ...] = (
        datetime(2026, 1, 1),
        datetime.max,
        datetime(9999, 12, 31, 23, tzinfo=MINUS_5),
        datetime(1, 1, 1, 1, tzinfo=PLUS_5),
        "2026-01-01T00:00:00Z",
        1_767_225_600,
        1.7e9,
        date(2026, 1, 1),
        b"2026",
        [],
        math.nan,
    )
    return Bad(
        listed + (() if allow_none else (None,)),
        st.one_of(
            st.datetimes(),
            st.integers(1, 23).map(lambda h: datetime(9999, 12, 31, h, tzinfo=MINUS_2359)),
            st.integers(0, 22).map(lambda h: datetime(1, 1, 1, h, tzinfo=PLUS_2359)),
        ),
    )


BAD_BOOLS = Bad((0, 1, "true", "", None, b"1", [], 1.0, math.nan))


def bad_enum(values: list[str], others: tuple[Any, ...]) -> Bad:
    return Bad(
        (
            *(x.upper() for x in values),
            *(f" {x}" for x in values),
            "",
            "\ud800",
            None,
            [values[0]],
            [HUGE],
            HUGE,
            *others,
        ),
        st.text(max_size=12).filter(lambda s: s not in values),
    )


BAD_TASK_STATUSES = bad_enum([s.value for s in TaskStatus], (b"pending", 0, 1, True))
BAD_DEPLOYMENT_STATUSES = bad_enum([s.value for s in DeploymentStatus], (b"running", 0, 2, True))
BAD_CURVES = bad_enum([c.value for c in CurveType], (b"ecdsa", 0, 1, True))
BAD_CONSENSUS_TYPES = Bad(
    (2, -1, HUGE, "0", "1", "NONE", None, b"\x01", 1.0, 0.0, True, False, [0], [HUGE], math.nan),
    st.integers().filter(lambda n: n not in (0, 1)),
)

_EVENT_ID_RE = re.compile(r"\d{1,20}-\d{1,20}", re.ASCII)
BAD_EVENT_IDS = Bad(
    (
        *(
            "",
            "0",
            "0-",
            "-0",
            "0-0-0",
            " 0-0",
            "0-0 ",
            "+1-0",
            "1-+0",
            "$",
            ">",
            "+",
            "-",
            "\u0661-0",
            "\uff11-0",
        ),
        *(
            "1-\ud800",
            f"{2**64}-0",
            f"0-{2**64}",
            "9" * 21 + "-0",
            "1" * 100_000 + "-0",
            "99999999999999999999-0",
        ),
        *(b"0-0", 0, 1.5, ["0-0"], True, ("0", "0")),
    ),
    st.text(max_size=24).filter(lambda s: not _EVENT_ID_RE.fullmatch(s)),
)

TOO_MANY_KEEP = [f"k{i}" for i in range(10_001)]
BAD_KEEP = Bad(
    (
        *("t1", "", b"t1", 1, None, True, 1.5, TOO_MANY_KEEP, ["ok", ""], ["ok", "a b"], ["ok", "\ud800"]),
        *(["ok", None], ("ok", 1), {"ok": None, "a\nb": None}, ["ok", "x" * 257]),
    ),
    st.lists(BAD_IDS.strategy(), min_size=1, max_size=3).map(lambda bad: ["ok", *bad]),
)

# ------------------------------------------------------------------ records, field by field

NOT_RECORDS = (None, {}, "t1", b"t1", 1, [], ("t1",))


def new_task(task_id: str = "t-new", **fields: Any) -> Task:
    """A task of chain 1 that is not in the namespace, with a payload at the bound."""
    return make_task(task_id, **{"chain_id": 1, "block_number": 9, "payload": b"p" * MAX_PAYLOAD, **fields})


ENV_VAR = EnvironmentVar(name="A", value="1")


def one_field_out(good: msgspec.Struct, fields: dict[str, Callable[[], Bad] | None]) -> Bad:
    """``good`` with one of ``fields`` out of bounds (a field mapped to None is left alone)."""
    bads = {name: make() for name, make in fields.items() if make is not None}
    return Bad(
        tuple(msgspec.structs.replace(good, **{name: x}) for name, bad in bads.items() for x in bad.listed),
        st.sampled_from(sorted(bads)).flatmap(
            lambda name: bads[name].strategy().map(lambda x: msgspec.structs.replace(good, **{name: x}))
        ),
    )


def bad_environment_vars() -> Bad:
    bad_var = Bad((*NOT_RECORDS, Consensus())) + one_field_out(ENV_VAR, NESTED_RECORDS[EnvironmentVar])
    return Bad(
        (
            *([ENV_VAR, bad] for bad in bad_var.listed),
            *([ENV_VAR] * (v.MAX_ENV_VARS + 1), "A=1", None, {"A": "1"}, ENV_VAR, {ENV_VAR}),
        ),
        bad_var.strategy().map(lambda bad: [ENV_VAR, bad]),
    )


def bad_consensus() -> Bad:
    return Bad((*NOT_RECORDS, 1, "NONE", ENV_VAR)) + one_field_out(Consensus(), NESTED_RECORDS[Consensus])


def bad_executor_set_ids() -> Bad:
    return Bad(
        (*([1, x] for x in BAD_INTS.listed), "1,2", None, {1, 2}, 5, b"\x01"),
        BAD_INTS.strategy().map(lambda x: [1, x]),
    )


TEXT_FIELDS = (
    "resource_id",
    "status",
    "artifact_registry",
    "artifact_digest",
    "artifact_tag",
    "deployment_mode",
    "network_name",
    "container_endpoint",
    "container_hostname",
)

# For each record type a parameter takes: each field, and the values it must refuse. A
# field that is not validated says so here, with why, so a new field cannot be forgotten.
RECORD_FIELDS: dict[type, dict[str, Callable[[], Bad] | None]] = {
    Task: {
        "task_id": lambda: BAD_IDS,
        "avs_address": lambda: BAD_ADDRESSES,
        "operator_set_id": lambda: BAD_INTS,
        "chain_id": lambda: BAD_INTS,
        "block_number": lambda: BAD_INTS,
        "block_hash": lambda: bad_text(v.MAX_HASH_CHARS),
        "callback_address": lambda: bad_text(v.MAX_ADDRESS_CHARS),
        "deadline": lambda: bad_datetimes(allow_none=True),
        "threshold_bips": lambda: BAD_INTS,
        "payload": lambda: bad_bytes(MAX_PAYLOAD),
    },
    BlockRecord: {
        "chain_id": lambda: BAD_INTS,
        "number": lambda: BAD_INTS,
        "hash": lambda: bad_text(v.MAX_HASH_CHARS),
        "parent_hash": lambda: bad_text(v.MAX_HASH_CHARS),
        "timestamp": lambda: BAD_INTS,
    },
    ChainLease: {
        "chain_id": lambda: BAD_INTS,
        "owner": lambda: BAD_IDS,
        "token": lambda: BAD_INTS,
        "expires_at": None,  # not consulted: the store's own record of the lease decides
    },
    OperatorSetTaskConfig: {
        "task_sla_s": lambda: bad_durations(allow_zero=True, allow_none=False),
        "curve_type": lambda: BAD_CURVES,
        "task_metadata": lambda: bad_bytes(MAX_PAYLOAD),
        "consensus": bad_consensus,
    },
    AvsConfig: {
        "aggregator_operator_set_id": lambda: BAD_INTS,
        "executor_operator_set_ids": bad_executor_set_ids,
        "curve_type": lambda: BAD_CURVES,
    },
    PerformerState: {
        "performer_id": lambda: BAD_IDS,
        "avs_address": lambda: BAD_ADDRESSES,
        **dict.fromkeys(TEXT_FIELDS, lambda: bad_text(v.MAX_FIELD_CHARS)),
        "created_at": lambda: bad_datetimes(allow_none=False),
        "last_health_check": lambda: bad_datetimes(allow_none=True),
        "container_healthy": lambda: BAD_BOOLS,
        "application_healthy": lambda: BAD_BOOLS,
        "environment_vars": bad_environment_vars,
    },
    InflightTask: {
        "task_id": lambda: BAD_IDS,
        "avs_address": lambda: BAD_ADDRESSES,
        "operator_address": lambda: BAD_ADDRESSES,
        "received_at": lambda: bad_datetimes(allow_none=False),
        "status": lambda: bad_text(v.MAX_STATUS_CHARS),
        "aggregator_address": lambda: bad_text(v.MAX_ADDRESS_CHARS),
        "operator_set_id": lambda: BAD_INTS,
    },
    Deployment: {
        "deployment_id": lambda: BAD_IDS,
        "avs_address": lambda: BAD_ADDRESSES,
        "artifact_registry": lambda: bad_text(v.MAX_FIELD_CHARS),
        "artifact_digest": lambda: bad_text(v.MAX_FIELD_CHARS),
        "status": lambda: BAD_DEPLOYMENT_STATUSES,
        "started_at": lambda: bad_datetimes(allow_none=False),
        "completed_at": lambda: bad_datetimes(allow_none=True),
        "error": lambda: bad_text(v.MAX_TEXT_CHARS),
    },
}
# Records inside records (Consensus in OperatorSetTaskConfig, EnvironmentVar in
# PerformerState): each field, and the values it must refuse.
NESTED_RECORDS: dict[type, dict[str, Callable[[], Bad]]] = {
    Consensus: {"type": lambda: BAD_CONSENSUS_TYPES, "threshold": lambda: BAD_INTS},
    EnvironmentVar: {
        "name": lambda: bad_text(v.MAX_ENV_NAME_CHARS),
        "value": lambda: bad_text(v.MAX_ENV_VALUE_CHARS),
        "value_from_env": lambda: bad_text(v.MAX_ENV_NAME_CHARS),
    },
}


def bad_record(good: msgspec.Struct) -> Bad:
    """``good`` with one field out of bounds, or something that is not such a record."""
    other = (
        new_task()
        if not isinstance(good, Task)
        else BlockRecord(chain_id=1, number=1, hash="", parent_hash="", timestamp=0)
    )
    return Bad((*NOT_RECORDS, msgspec.structs.asdict(good), other)) + one_field_out(
        good, RECORD_FIELDS[type(good)]
    )


def bad_task_batches() -> Bad:
    one = bad_record(new_task())
    return Bad(
        (
            *("t1", b"t1", 1, None, True, {"task_id": "t1"}),
            # two different tasks under one id in one batch
            *([new_task(), new_task(payload=b"other")], (new_task("x"), new_task("x", block_number=10))),
            *([new_task("t-ok"), bad] for bad in one.listed),
        ),
        one.strategy().map(lambda bad: [new_task("t-ok"), bad]),
    )


# ------------------------------------------------------------------ the seeded namespace


async def seed(agg: AggregatorStore, ex: ExecutorStore, clock: ManualClock) -> tuple[int, ChainLease]:
    """Something of everything: t-proc processing, t-done completed and t-fail failed (both
    past retention), t-pend pending (all of chain 1, above block 0); chain 1's cursor at 10
    under a live lease, its block records 1-3; a runner lease; an operator set config and an
    AVS config; a performer, an inflight task, a deployment and a de-dup marker.

    Returns:
        the token of t-proc and the lease of chain 1.
    """
    lease = await agg.acquire_chain_lease(1, "poller", ttl_s=LONG_LEASE_S)
    assert lease is not None
    await agg.set_last_processed_block(1, 10, fence=lease.token)
    for n in (1, 2, 3):
        await agg.save_block(BlockRecord(chain_id=1, number=n, hash=f"0x{n}", parent_hash="0x0", timestamp=n))
    tokens = {}
    for i, task_id in enumerate(["t-done", "t-fail", "t-proc"]):
        await agg.save_task(make_task(task_id, chain_id=1, block_number=5 + i))
        [claimed] = await agg.claim_tasks("w", limit=1, lease_s=LONG_LEASE_S)
        tokens[task_id] = claimed.token
    await agg.complete_task("t-done", tokens["t-done"])
    await agg.fail_task("t-fail", tokens["t-fail"], "boom")
    await agg.save_task(make_task("t-pend", chain_id=1, block_number=8))
    assert await agg.try_runner_lease("reaper", "a", ttl_s=3600)
    await agg.save_operator_set_config(
        AVS, 1, OperatorSetTaskConfig(task_sla_s=30, curve_type=CurveType.BN254)
    )
    await agg.save_avs_config(
        AVS,
        AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[1], curve_type=CurveType.ECDSA),
    )
    await ex.save_performer_state(make_performer("p1", environment_vars=[ENV_VAR]))
    await ex.save_inflight_task(make_inflight("i1"))
    await ex.save_deployment(make_deployment("d1"))
    assert await ex.mark_task_processed("t-done")
    clock.advance(2 * RETENTION_S)  # t-done and t-fail may now be trimmed
    return tokens["t-proc"], lease


def fake_snapshot(namespace: str) -> Any:
    """The fake's whole state of ``namespace``, as plain values (a deep copy)."""
    return {
        "aggregator": _plain(memory._AGGREGATORS.get(namespace)),
        "executor": _plain(memory._EXECUTORS.get(namespace)),
        "epoch": memory._EPOCHS.get(namespace),
        "schema": memory._SCHEMAS.get(namespace),
    }


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bytes | datetime | enum.Enum):
        return value
    if isinstance(value, msgspec.Struct):
        return (type(value).__name__, msgspec.to_builtins(value))
    if isinstance(value, memory._PendingIndex):
        return ("pending-index", list(value.heap), dict(value.members))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)},
        )
    if isinstance(value, dict):
        return {_plain(k): _plain(x) for k, x in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(x) for x in value)
    if isinstance(value, list | deque):
        return [_plain(x) for x in value]
    if isinstance(value, itertools.count):
        return repr(value)  # "count(<next value>)"
    if isinstance(value, asyncio.Future):
        return ("future", value.done())
    raise TypeError(f"fake_snapshot does not know how to copy a {type(value).__name__}")


# Every key given: its type, absolute expiry (ms, -1 for none) and whole contents, read in
# one script so that the snapshot is one consistent read (hash fields are compared as a
# mapping: their order is the encoding's, which a RESTORE may change).
_DUMP_LUA = """#!lua flags=no-writes
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  local contents
  if kind == 'string' then contents = redis.call('GET', key)
  elseif kind == 'hash' then contents = redis.call('HGETALL', key)
  elseif kind == 'zset' then contents = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  elseif kind == 'stream' then
    contents = {redis.call('XRANGE', key, '-', '+'), redis.call('XINFO', 'STREAM', key)}
  elseif kind == 'list' then contents = redis.call('LRANGE', key, 0, -1)
  elseif kind == 'set' then contents = redis.call('SMEMBERS', key); table.sort(contents)
  else contents = 'unknown type' end
  out[i] = {key, kind, redis.call('PEXPIRETIME', key), contents}
end
return out
"""
# Put the keys given back as DUMP made them (payload, absolute expiry), the others removed.
_RESTORE_LUA = """
for i, key in ipairs(KEYS) do redis.call('DEL', key) end
for i = 1, #ARGV, 3 do
  redis.call('RESTORE', ARGV[i], ARGV[i + 1], ARGV[i + 2], 'REPLACE', 'ABSTTL')
end
return #ARGV / 3
"""


class Target:
    """A seeded namespace on one backend: its stores, what the seed left (a token and a
    lease), a full snapshot of it, and a way to put it back as it was seeded."""

    def __init__(self, backend: str, redis_url: str | None) -> None:
        self.backend = backend
        self.namespace = f"fuzz-{uuid.uuid4().hex[:12]}"
        self.keys = Keys(self.namespace)
        self.clock = ManualClock()
        self.redis_url = redis_url
        # The snapshot's own connection, to the server the stores use.
        self.client = None if redis_url is None else aioredis.Redis.from_url(redis_url)
        self.token = 0
        self.lease: ChainLease | None = None
        self.baseline: Any = None
        self.dump: list[Any] = []

    def __repr__(self) -> str:
        return f"<{self.backend} namespace {self.namespace!r}, seeded>"

    async def open(self) -> None:
        if self.redis_url is None:
            tuning: dict[str, Any] = {"clock": self.clock, "max_payload_bytes": MAX_PAYLOAD}
            self.agg: AggregatorStore = memory.MemoryAggregatorStore(
                self.namespace, retention_s=RETENTION_S, **tuning
            )
            self.ex: ExecutorStore = memory.MemoryExecutorStore(self.namespace, **tuning)
            return
        config = StorageConfig.from_dict(
            {
                "namespace": self.namespace,
                "redis": {"url": self.redis_url, "durability": "none"},
                "tasks": {"retention_s": RETENTION_S, "max_payload_bytes": MAX_PAYLOAD},
            }
        )
        self.agg = await RedisAggregatorStore.open(config, clock=self.clock)
        self.ex = await RedisExecutorStore.open(config, clock=self.clock)

    async def seed(self) -> None:
        await self.open()
        self.token, self.lease = await seed(self.agg, self.ex, self.clock)
        self.baseline = await self.snapshot()
        if self.client is not None:
            names = await self._names()
            pipe = self.client.pipeline(transaction=False)
            for key in names:
                pipe.dump(key)
                pipe.pexpiretime(key)
            dumped = await pipe.execute()
            self.dump = [
                x
                for key, payload, expiry in zip(names, dumped[0::2], dumped[1::2], strict=True)
                for x in (key, max(0, expiry), payload)
            ]

    async def _names(self) -> list[bytes]:
        assert self.client is not None
        return sorted([key async for key in self.client.scan_iter(match=self.keys.pattern, count=1000)])

    async def snapshot(self) -> Any:
        if self.client is None:
            return fake_snapshot(self.namespace)
        names = await self._names()
        dumped = await self.client.eval(_DUMP_LUA, len(names), *names)
        return {
            key: (kind, expiry, dict(zip(c[::2], c[1::2], strict=True)) if kind == b"hash" else c)
            for key, kind, expiry, c in dumped
        }

    async def restore(self) -> None:
        """Put the namespace back as it was seeded (and the stores open)."""
        if self.client is None:
            await self.close()
            memory.reset_memory_namespaces(self.namespace)
            self.clock = ManualClock()
            await self.seed()  # the same seed, on a namespace made anew
            return
        names = await self._names()
        await self.client.eval(_RESTORE_LUA, len(names), *names, *self.dump)
        if getattr(self.agg, "_closed", False) or getattr(self.ex, "_closed", False):
            await self.close()
            await self.open()
        assert await self.snapshot() == self.baseline, "the namespace could not be put back"

    async def close(self) -> None:
        await self.agg.close()
        await self.ex.close()

    async def aclose(self) -> None:
        await self.close()
        if self.client is not None:
            names = await self._names()
            if names:
                await self.client.delete(*names)
            await self.client.aclose()
        memory.reset_memory_namespaces(self.namespace)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    seeded = Target(
        request.param, None if request.param == "memory" else request.getfixturevalue("redis_url")
    )
    await seeded.seed()
    try:
        yield seeded
    finally:
        await seeded.aclose()


# ------------------------------------------------------------------ every method, every parameter


@dataclasses.dataclass(frozen=True)
class Param:
    """A parameter: a value the call accepts (given the seeded namespace), and the values it refuses."""

    good: Callable[[Target], Any]
    bad: Callable[[Target], Bad]


def const(value: Any) -> Callable[[Target], Any]:
    return lambda _: value


def of(make: Callable[[], Bad]) -> Callable[[Target], Bad]:
    return lambda _: make()


def ids(good: str) -> Param:
    return Param(const(good), of(lambda: BAD_IDS))


def ints(good: int) -> Param:
    return Param(const(good), of(lambda: BAD_INTS))


def address(good: str = AVS, *, optional: bool = False) -> Param:
    return Param(const(good), of(lambda: BAD_ADDRESSES_NOT_NONE if optional else BAD_ADDRESSES))


def ttl(good: float = 30) -> Param:
    return Param(const(good), of(lambda: bad_durations(allow_zero=False, allow_none=False)))


def text(good: str, bound: int = v.MAX_TEXT_CHARS) -> Param:
    return Param(const(good), of(lambda: bad_text(bound)))


def record(good: msgspec.Struct) -> Param:
    return Param(const(good), of(lambda: bad_record(good)))


TOKEN = Param(lambda t: t.token, of(lambda: BAD_INTS))
FENCE = Param(lambda t: t.lease.token, of(lambda: BAD_INTS_NOT_NONE))
LEASE = Param(lambda t: t.lease, lambda t: bad_record(t.lease))

# Each method of each Protocol: its parameters, each with a value it accepts and the values
# it refuses. The good values make a write act, so that it would show in the snapshot.
SPECS: dict[str, dict[str, dict[str, Param]]] = {
    "AggregatorStore": {
        "get_last_processed_block": {"chain_id": ints(1)},
        "set_last_processed_block": {"chain_id": ints(1), "block_number": ints(11), "fence": FENCE},
        "rewind_chain": {"chain_id": ints(1), "block_number": ints(2), "fence": FENCE},
        "save_block": {
            "record": record(BlockRecord(chain_id=1, number=20, hash="0xh", parent_hash="0xp", timestamp=1))
        },
        "get_block": {"chain_id": ints(1), "number": ints(2)},
        "delete_block": {"chain_id": ints(1), "number": ints(2)},
        "acquire_chain_lease": {"chain_id": ints(2), "owner": ids("poller"), "ttl_s": ttl()},
        "renew_chain_lease": {"lease": LEASE, "ttl_s": ttl(60)},
        "release_chain_lease": {"lease": LEASE},
        "save_task": {"task": record(new_task())},
        "save_tasks": {"tasks": Param(const([new_task(), new_task("t-new2")]), of(bad_task_batches))},
        "get_task": {"task_id": ids("t-pend")},
        "list_pending_tasks": {
            "avs_address": address(optional=True),
            "limit": Param(const(10), of(lambda: bad_limits(allow_none=True))),
        },
        "count_tasks": {},
        "update_task_status": {
            "task_id": ids("t-pend"),
            "status": Param(const(TaskStatus.PROCESSING), of(lambda: BAD_TASK_STATUSES)),
        },
        "delete_task": {"task_id": ids("t-pend")},
        "claim_tasks": {
            "owner": ids("w2"),
            "limit": Param(const(1), of(lambda: bad_limits(allow_none=False))),
            "lease_s": ttl(),
        },
        "renew_task_lease": {"task_id": ids("t-proc"), "token": TOKEN, "lease_s": ttl(60)},
        "complete_task": {"task_id": ids("t-proc"), "token": TOKEN},
        "fail_task": {
            "task_id": ids("t-proc"),
            "token": TOKEN,
            "reason": text("boom"),
            "retry": Param(const(False), of(lambda: BAD_BOOLS)),
        },
        "release_task": {"task_id": ids("t-proc"), "token": TOKEN},
        "reap_expired_leases": {},
        "trim_finished_tasks": {"limit": Param(const(1000), of(lambda: bad_limits(allow_none=False)))},
        "fail_orphaned_tasks": {
            "chain_id": ints(1),
            "above_block": ints(0),
            "keep": Param(const(()), of(lambda: BAD_KEEP)),
            "reason": text("reorg"),
            "fence": FENCE,
        },
        "try_runner_lease": {"name": ids("trimmer"), "owner": ids("a"), "ttl_s": ttl()},
        "save_operator_set_config": {
            "avs_address": address(),
            "operator_set_id": ints(2),
            "config": record(
                OperatorSetTaskConfig(
                    task_sla_s=5,
                    curve_type=CurveType.ECDSA,
                    task_metadata=b"m" * MAX_PAYLOAD,
                    consensus=Consensus(),
                )
            ),
        },
        "get_operator_set_config": {"avs_address": address(), "operator_set_id": ints(1)},
        "save_avs_config": {
            "avs_address": address(AVS_B),
            "config": record(
                AvsConfig(
                    aggregator_operator_set_id=1, executor_operator_set_ids=[2, 3], curve_type=CurveType.BN254
                )
            ),
        },
        "get_avs_config": {"avs_address": address()},
        "events": {
            "after": Param(const(None), of(lambda: BAD_EVENT_IDS)),
            "block_s": Param(const(None), of(lambda: bad_durations(allow_zero=True, allow_none=True))),
        },
        "close": {},
    },
    "ExecutorStore": {
        "save_performer_state": {"state": record(make_performer("p-new", environment_vars=[ENV_VAR]))},
        "get_performer_state": {"performer_id": ids("p1")},
        "list_performer_states": {},
        "delete_performer_state": {"performer_id": ids("p1")},
        "save_inflight_task": {"task": record(make_inflight("i-new"))},
        "get_inflight_task": {"task_id": ids("i1")},
        "list_inflight_tasks": {},
        "delete_inflight_task": {"task_id": ids("i1")},
        "save_deployment": {"deployment": record(make_deployment("d-new"))},
        "get_deployment": {"deployment_id": ids("d1")},
        "update_deployment_status": {
            "deployment_id": ids("d1"),
            "status": Param(const(DeploymentStatus.DEPLOYING), of(lambda: BAD_DEPLOYMENT_STATUSES)),
            "error": text("slow pull"),
        },
        "list_deployment_history": {"deployment_id": ids("d1")},
        "mark_task_processed": {"task_id": ids("t-new")},
        "is_task_processed": {"task_id": ids("t-done")},
        "close": {},
    },
}
# The methods whose good call writes (the snapshot must show it); the others only read.
WRITES = {
    "set_last_processed_block",
    "rewind_chain",
    "save_block",
    "delete_block",
    "acquire_chain_lease",
    "renew_chain_lease",
    "release_chain_lease",
    "save_task",
    "save_tasks",
    "update_task_status",
    "delete_task",
    "claim_tasks",
    "renew_task_lease",
    "complete_task",
    "fail_task",
    "release_task",
    "reap_expired_leases",  # it also trims the finished tasks past retention
    "trim_finished_tasks",
    "fail_orphaned_tasks",
    "try_runner_lease",
    "save_operator_set_config",
    "save_avs_config",
    "save_performer_state",
    "delete_performer_state",
    "save_inflight_task",
    "delete_inflight_task",
    "save_deployment",
    "update_deployment_status",
    "mark_task_processed",
}


def protocol_methods(protocol: type) -> dict[str, inspect.Signature]:
    """The public methods of a store Protocol, with their signatures."""
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(protocol, inspect.isfunction)
        if not name.startswith("_")
    }


ALL_CALLS = [
    pytest.param(proto, name, id=f"{proto}.{name}") for proto, methods in SPECS.items() for name in methods
]
FUZZED = [p for p in ALL_CALLS if SPECS[p.values[0]][p.values[1]]]  # those with parameters


def invoke(target: Target, proto: str, name: str, values: dict[str, Any]) -> Any:
    """Call the method as its Protocol declares it: positional parameters by position,
    keyword-only ones by keyword."""
    store = target.agg if proto == "AggregatorStore" else target.ex
    args, kwargs = [], {}
    for param in list(inspect.signature(getattr(PROTOCOLS[proto], name)).parameters.values())[1:]:
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[param.name] = values[param.name]
        else:
            args.append(values[param.name])
    return getattr(store, name)(*args, **kwargs)


async def run(call: Any) -> Any:
    """Await a call; of an async iterator (events), take the first step, which validates."""
    if inspect.isawaitable(call):
        return await call
    async with contextlib.aclosing(call) as feed, asyncio.timeout(5):
        return await anext(feed, None)


async def assert_refused(target: Target, proto: str, name: str, values: dict[str, Any]) -> None:
    """The call raises InvalidInputError and the namespace is as seeded (if it is not, it is
    put back, so that the next calls start from the seed again)."""
    try:
        with pytest.raises(InvalidInputError):
            await run(invoke(target, proto, name, values))
    finally:
        changed = await target.snapshot() != target.baseline
        if changed:
            await target.restore()
    assert not changed, f"{proto}.{name} refused its input but changed the namespace"


def listed_calls(target: Target, proto: str, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each listed value out of bounds of each parameter, the other parameters good."""
    spec = SPECS[proto][name]
    good = {param: p.good(target) for param, p in spec.items()}
    for param, p in spec.items():
        for bad in p.bad(target).listed:
            yield param, {**good, param: bad}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_every_method_parameter_and_field_has_a_fuzz_strategy(proto: str) -> None:
    methods = protocol_methods(PROTOCOLS[proto])
    assert sorted(SPECS[proto]) == sorted(methods), "a method of the Protocol has no entry in SPECS"
    for name, signature in methods.items():
        params = [p for p in signature.parameters if p != "self"]
        assert sorted(SPECS[proto][name]) == sorted(params), f"{proto}.{name}: parameters without values"
    for cls, fields in [*RECORD_FIELDS.items(), *NESTED_RECORDS.items()]:
        assert sorted(fields) == sorted(cls.__struct_fields__), f"{cls.__name__}: fields without values"


@in_module_loop
@pytest.mark.parametrize(("proto", "name"), ALL_CALLS)
async def test_good_call_is_accepted_and_a_write_shows_in_the_snapshot(
    target: Target, proto: str, name: str
) -> None:
    """The good values are accepted, and what a write does with them shows in the snapshot
    (so a call refused after it wrote would be caught)."""
    values = {param: p.good(target) for param, p in SPECS[proto][name].items()}
    await run(invoke(target, proto, name, values))
    changed = await target.snapshot() != target.baseline
    if changed or name == "close":
        await target.restore()
    assert changed == (name in WRITES), f"{proto}.{name} with good values"


@in_module_loop
@pytest.mark.parametrize(("proto", "name"), FUZZED)
async def test_every_listed_out_of_bounds_value_is_refused(target: Target, proto: str, name: str) -> None:
    tried = 0
    for _param, values in listed_calls(target, proto, name):
        await assert_refused(target, proto, name, values)
        tried += 1
    assert tried >= 10 * len(SPECS[proto][name])


@in_module_loop
@pytest.mark.parametrize(("proto", "name"), FUZZED)
@settings(
    max_examples=EXAMPLES_PER_METHOD,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_out_of_bounds_input_raises_invalid_input_and_writes_nothing(
    target: Target, proto: str, name: str, data: st.DataObject
) -> None:
    spec = SPECS[proto][name]
    bad = data.draw(st.sets(st.sampled_from(sorted(spec)), min_size=1), label="out of bounds")
    values = {
        param: data.draw(p.bad(target).strategy(), label=param) if param in bad else p.good(target)
        for param, p in spec.items()
    }
    await assert_refused(target, proto, name, values)
