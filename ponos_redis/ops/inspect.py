"""Read-only views of a namespace: what the inspection commands of ``ponos-redis`` print.

:func:`inspect_namespace` opens a view that writes nothing: no meta write, no
script load, no durability check (``doctor`` checks durability). On Redis it
is a plain client from :func:`ponos_redis._connection.connect` that reads the
keys :class:`~ponos_redis.keys.Keys` names and decodes them with the store's
own decoders, under the store's retry policy. So a view works against a
replica, and as an ACL user allowed only ``+@read``: what such a user may not
run (``INFO``, ``TIME``) is reported as unknown, never as an error. Opening a
namespace whose meta hash does not exist raises :class:`NotFoundError`
("namespace ... not found").

On the in-process fake (``memory``) the view reads the fake's state in this
process: a new process sees an empty namespace.

Every result is a frozen msgspec Struct: ``msgspec.to_builtins`` gives the JSON
of the commands' ``--json`` (the schemas are in docs/operations.md). Payloads
are :class:`Payload` (length and hex), never Python reprs.

Bounds: listings read at most what they are asked for (``limit``); discovering
chains and runner leases walks the namespace's keys with ``SCAN`` (never
``KEYS``), at most :data:`MAX_SCAN_CALLS` calls of ``COUNT`` :data:`SCAN_COUNT`,
and says when it stopped early (``chains_truncated``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import msgspec
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from .. import _codec as codec
from .. import _validate as v
from .._connection import RedisClient, can_rediscover, connect, redact, retrying
from .._ops import as_text
from ..backends._common import MAX_EVENT_ID, parse_event_id
from ..config import RetrySettings, StorageConfig
from ..errors import CorruptRecordError, NotFoundError, SchemaVersionError
from ..keys import SCHEMA_VERSION, Keys, parse_key
from ..models import (
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    InflightTask,
    PerformerState,
    StoreEvent,
    TaskStatus,
)

__all__ = [
    "MAX_SCAN_CALLS",
    "SCAN_COUNT",
    "SET_ASIDE",
    "ChainLeaseView",
    "ChainView",
    "DeploymentView",
    "LeaseHolder",
    "LeasesView",
    "NamespaceSummary",
    "NamespaceView",
    "OldestPending",
    "Payload",
    "RunnerLease",
    "ServerView",
    "StreamView",
    "TaskCounts",
    "TaskFields",
    "TaskLease",
    "TaskView",
    "inspect_namespace",
    "parse_task_selector",
]

log = logging.getLogger("ponos_redis")
T = TypeVar("T")
RecordT = TypeVar("RecordT", bound=msgspec.Struct)

SCAN_COUNT = 1000
MAX_SCAN_CALLS = 1000  # at most about a million keys looked at by one discovery
SET_ASIDE: Literal["set-aside"] = "set-aside"  # the pseudo-status of tasks set aside (see docs/keys.md)
_BATCH = 500  # records read per round trip
_MAX_EXAMINED = 100_000  # index entries a filtered listing looks at, at most
_BYTES_FIELDS = frozenset({"payload", "task_metadata"})

Clock = Literal["server", "local"]


# -- results ----------------------------------------------------------------------------


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """Bytes as an operator reads them: the length and the hex digits (no ``0x``)."""

    length: int
    hex: str

    @classmethod
    def of(cls, data: bytes) -> Payload:
        """The view of ``data``."""
        return cls(length=len(data), hex=data.hex())


class TaskFields(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of a task as it was saved (``Task``), the payload as :class:`Payload`."""

    avs_address: str
    operator_set_id: int
    chain_id: int
    block_number: int
    block_hash: str
    callback_address: str
    deadline: datetime | None
    threshold_bips: int
    payload: Payload


class TaskView(msgspec.Struct, frozen=True, kw_only=True):
    """One task: its state, its fields, or why its record cannot be read.

    ``status`` is the stored status (``set-aside`` tasks keep theirs; ``set_aside``
    says they were set aside). ``problem`` is None for a readable record; for
    an unreadable one it says why, ``task`` is None and ``raw`` has every stored
    field (text, or ``0x`` + hex for bytes).
    """

    task_id: str
    key: str
    status: str | None
    set_aside: bool = False
    attempts: int | None = None
    owner: str | None = None
    token: int | None = None
    lease_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_error: str | None = None
    task: TaskFields | None = None
    problem: str | None = None
    raw: dict[str, str] | None = None


class TaskCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Tasks by status (``set_aside``: records set aside as unreadable)."""

    pending: int
    processing: int
    completed: int
    failed: int
    set_aside: int


class OldestPending(msgspec.Struct, frozen=True, kw_only=True):
    """The task that waits longest, and for how long (since it was saved)."""

    task_id: str
    created_at: datetime | None
    age_s: float | None


class LeaseHolder(msgspec.Struct, frozen=True, kw_only=True):
    """The task leases one owner holds: how many, how many expired, their expiry range."""

    owner: str
    tasks: int
    expired: int
    next_expiry: datetime
    last_expiry: datetime


class LeaseSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Task leases: ``held`` in all, ``expired`` (the reaper's next work), by holder.

    ``holders`` covers the first ``examined`` leases by expiry; ``truncated``
    says there were more.
    """

    held: int
    expired: int
    holders: list[LeaseHolder]
    examined: int
    truncated: bool


class ChainLeaseView(msgspec.Struct, frozen=True, kw_only=True):
    """A chain's lease: who polls it, with which fencing token, until when."""

    owner: str
    token: int | None
    expires_at: datetime | None
    expired: bool
    expires_in_s: float | None


class ChainView(msgspec.Struct, frozen=True, kw_only=True):
    """A chain: its cursor (the last processed block), its lease, what it keeps."""

    chain_id: int
    cursor: int | None
    lease: ChainLeaseView | None
    blocks_saved: int
    newest_block: int | None
    tasks: int


class StreamView(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's length and the ids of its first and last entries."""

    name: str
    key: str
    length: int
    first_id: str | None
    last_id: str | None
    maxlen: int | None


class ServerView(msgspec.Struct, frozen=True, kw_only=True):
    """What the server says about itself (``INFO``); ``unavailable`` says why not, if not."""

    address: str
    mode: str
    redis_version: str | None = None
    role: str | None = None
    uptime_s: int | None = None
    used_memory: int | None = None
    used_memory_human: str | None = None
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    aof_enabled: bool | None = None
    aof_last_write_status: str | None = None
    aof_rewrite_in_progress: bool | None = None
    rdb_last_bgsave_status: str | None = None
    rdb_changes_since_last_save: int | None = None
    loading: bool | None = None
    connected_replicas: int | None = None
    master_link_status: str | None = None
    unavailable: str | None = None


class NamespaceSummary(msgspec.Struct, frozen=True, kw_only=True):
    """``ponos-redis status``: everything an operator looks at first."""

    namespace: str
    backend: str
    schema_version: int | None
    schema_supported: int
    created_at: datetime | None
    epoch: str | None
    now: datetime
    clock: str
    tasks: TaskCounts
    oldest_pending: OldestPending | None
    leases: LeaseSummary
    chains: list[ChainView]
    chains_truncated: bool
    streams: list[StreamView]
    server: ServerView | None
    migration: str | None = None


class TaskLease(msgspec.Struct, frozen=True, kw_only=True):
    """One task lease (a processing task)."""

    task_id: str
    owner: str | None
    token: int | None
    lease_until: datetime
    expired: bool
    expires_in_s: float
    attempts: int | None


class RunnerLease(msgspec.Struct, frozen=True, kw_only=True):
    """The single-runner lease of a periodic job (the reaper's guard, say)."""

    name: str
    owner: str
    expires_at: datetime | None
    expired: bool


class LeasesView(msgspec.Struct, frozen=True, kw_only=True):
    """``ponos-redis leases``: task leases by expiry, chain leases, runner leases."""

    now: datetime
    clock: str
    tasks: list[TaskLease]
    tasks_total: int
    truncated: bool
    chains: list[ChainView]
    runners: list[RunnerLease]


class DeploymentView(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment and every status change it went through, oldest first."""

    deployment: Deployment
    history: list[DeploymentEvent]


class _HistoryBody(msgspec.Struct, frozen=True, kw_only=True):
    status: DeploymentStatus
    at: datetime
    error: str = ""


# -- helpers ----------------------------------------------------------------------------


def parse_task_selector(status: str | None) -> TaskStatus | Literal["set-aside"] | None:
    """A ``--status`` value: a task status, ``set-aside``, or None for every status."""
    if status is None:
        return None
    if status == SET_ASIDE:
        return SET_ASIDE
    return v.task_status(status)


def _raw_value(name: str, value: bytes) -> str:
    if name not in _BYTES_FIELDS:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable():
                return text
    return "0x" + value.hex()


def _task_view(key: str, task_id: str, fields: dict[Any, Any], *, set_aside: bool) -> TaskView:
    try:
        record = codec.decode_task_record(key, fields)
    except CorruptRecordError as exc:
        status = fields.get(b"status", fields.get("status"))
        return TaskView(
            task_id=task_id,
            key=key,
            status=None if status is None else _raw_value("status", _as_bytes(status)),
            set_aside=set_aside,
            problem=exc.reason,
            raw={as_text(name): _raw_value(as_text(name), _as_bytes(val)) for name, val in fields.items()},
        )
    return _from_record(key, record, set_aside=set_aside)


def _from_record(key: str, record: Any, *, set_aside: bool = False) -> TaskView:
    task = record.task
    return TaskView(
        task_id=task.task_id,
        key=key,
        status=record.status.value,
        set_aside=set_aside,
        attempts=record.attempts,
        owner=record.owner,
        token=record.token,
        lease_until=record.lease_until,
        created_at=record.created_at,
        updated_at=record.updated_at,
        last_error=record.last_error,
        task=TaskFields(
            avs_address=task.avs_address,
            operator_set_id=task.operator_set_id,
            chain_id=task.chain_id,
            block_number=task.block_number,
            block_hash=task.block_hash,
            callback_address=task.callback_address,
            deadline=task.deadline,
            threshold_bips=task.threshold_bips,
            payload=Payload.of(task.payload),
        ),
    )


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _seconds(delta_ms: int) -> float:
    return round(delta_ms / 1000, 3)


def _hide_env(state: PerformerState) -> PerformerState:
    """Environment values can be secrets: shown as their length only."""
    hidden = [
        msgspec.structs.replace(var, value=f"<{len(var.value)} characters hidden>") if var.value else var
        for var in state.environment_vars
    ]
    return msgspec.structs.replace(state, environment_vars=hidden)


def _holders(leases: list[TaskLease]) -> list[LeaseHolder]:
    by_owner: dict[str, list[TaskLease]] = {}
    for lease in leases:
        by_owner.setdefault(lease.owner or "?", []).append(lease)
    return [
        LeaseHolder(
            owner=owner,
            tasks=len(held),
            expired=sum(1 for lease in held if lease.expired),
            next_expiry=min(lease.lease_until for lease in held),
            last_expiry=max(lease.lease_until for lease in held),
        )
        for owner, held in sorted(by_owner.items())
    ]


def _matches(view: TaskView, avs: str | None, cutoff_ms: int | None, owner: str | None = None) -> bool:
    if avs is not None and (view.task is None or view.task.avs_address != avs):
        return False
    if owner is not None and view.owner != owner:
        return False
    if cutoff_ms is not None:
        if view.updated_at is None:
            return view.problem is not None  # an unreadable record has no age: it matches
        return v.to_ms(view.updated_at) <= cutoff_ms
    return True


# -- the view ---------------------------------------------------------------------------


class NamespaceView:
    """What can be read about one namespace; see :func:`inspect_namespace`.

    Every method reads only. ``older_than_s`` filters on the time since a task
    last changed (``updated_at``).
    """

    backend: str
    namespace: str
    keys: Keys

    async def now(self) -> tuple[datetime, Clock]:
        """The time by the server's clock (``server``), or by this host's when ``TIME``
        is not permitted (``local``)."""
        raise NotImplementedError

    async def summary(self, *, lease_limit: int = 1000) -> NamespaceSummary:
        """Everything ``status`` shows; the lease holders cover the first ``lease_limit`` leases."""
        raise NotImplementedError

    async def task(self, task_id: str) -> TaskView:
        """One task. Raises NotFoundError if it does not exist."""
        raise NotImplementedError

    async def tasks(
        self,
        *,
        status: TaskStatus | Literal["set-aside"] | None = None,
        avs: str | None = None,
        older_than_s: float | None = None,
        limit: int = 50,
        skip: frozenset[str] = frozenset(),
        owner: str | None = None,
    ) -> list[TaskView]:
        """Tasks of one status (every status when None), in index order, at most ``limit``.

        Pending tasks come in queue order, processing ones by lease expiry,
        completed and failed ones (and set-aside ones) by when that happened;
        oldest first. ``skip``: ids to leave out (a bulk action's done ones);
        ``owner``: only the tasks this owner holds.
        """
        raise NotImplementedError

    async def leases(self, *, limit: int = 100) -> LeasesView:
        """Task leases (the ``limit`` soonest to expire), chain leases and runner leases."""
        raise NotImplementedError

    async def chains(self) -> tuple[list[ChainView], bool]:
        """Every chain with a cursor or a lease, and whether the search stopped early."""
        raise NotImplementedError

    async def performers(self) -> list[PerformerState]:
        """The executor's performers, by id; environment values are hidden."""
        raise NotImplementedError

    async def inflight(self) -> list[InflightTask]:
        """The executor's inflight tasks (``interrupted`` after a restart), by id."""
        raise NotImplementedError

    async def deployments(self) -> list[Deployment]:
        """The executor's deployments, by id."""
        raise NotImplementedError

    async def deployment(self, deployment_id: str) -> DeploymentView:
        """One deployment with its history. Raises NotFoundError if it does not exist."""
        raise NotImplementedError

    def events(
        self, *, after: str | None = None, follow: bool = False, stop: asyncio.Event | None = None
    ) -> AsyncIterator[StoreEvent]:
        """The event stream after ``after`` (from the oldest kept when None); with
        ``follow`` it waits for new events until ``stop`` is set."""
        raise NotImplementedError

    async def server(self) -> ServerView | None:
        """What the server says about itself; None on the in-process fake."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection (if any)."""


def _nothing_after(after: str | None) -> bool:
    """Check an event id; True when it is the greatest possible one (nothing can follow it)."""
    return after is not None and parse_event_id(after) == MAX_EVENT_ID


# -- Redis ------------------------------------------------------------------------------


class RedisNamespaceView(NamespaceView):
    """A namespace on Redis, read through a plain client (no scripts, no writes).

    ``client``, ``keys``, :meth:`io`, :meth:`target` and :meth:`scan` are for
    the other operations of this package (``doctor``) to read more.
    """

    backend = "redis"

    def __init__(self, config: StorageConfig, *, retry: RetrySettings | None = None) -> None:
        """Build the view (no I/O); :func:`inspect_namespace` is the way in."""
        assert config.redis is not None
        self.config = config
        self.settings = config.redis
        self.namespace = config.namespace
        self.keys = Keys(config.namespace)
        self.client: RedisClient = connect(config.redis)
        self._r: Any = self.client
        self._retry = retry or config.redis.retry
        self._rediscovers = can_rediscover(self.client)
        self.cluster = isinstance(self.client, RedisCluster)
        if isinstance(self.client, RedisCluster):
            # A view looks at what it can: a cluster with a slot nobody serves is still read
            # (doctor reports the gap) rather than refused by the client as a whole.
            self.client.nodes_manager.require_full_coverage = False
        self.meta: dict[str, str] = {}

    # -- plumbing

    async def io(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` under the retry policy, errors translated (StoreUnavailableError ...)."""
        return await retrying(self._retry, call, what, rediscovers=self._rediscovers)

    async def target(self) -> dict[str, Any]:
        """Keyword arguments sending a keyless command to the namespace's node (on a cluster)."""
        if not self.cluster:
            return {}
        await self.io("cluster slots", self._r.initialize)
        return {"target_nodes": self._r.get_node_from_key(self.keys.meta)}

    async def optional(self, what: str, call: Callable[[], Awaitable[T]]) -> tuple[T | None, str | None]:
        """Run a command the server may refuse (an ACL, a renamed command): the reply, or
        None and the refusal."""

        async def guarded() -> tuple[T | None, str | None]:
            try:
                return await call(), None
            except rexc.ResponseError as exc:
                return None, redact(str(exc)).split("\n")[0]

        return await self.io(what, guarded)

    async def scan(
        self, pattern: str, *, max_calls: int = MAX_SCAN_CALLS, max_found: int | None = None
    ) -> tuple[list[str], bool]:
        """Keys matching ``pattern`` on the namespace's node, by SCAN; and whether it
        stopped early: after ``max_calls`` calls, or once ``max_found`` keys were found."""
        target = await self.target()
        found: list[str] = []
        cursor: Any = 0
        for _ in range(max_calls):

            async def call(cursor: Any = cursor) -> Any:
                if self.cluster:
                    return await self._r.execute_command(
                        "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, **target
                    )
                return await self._r.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)

            reply = await self.io("scan", call)
            cursor, keys = reply
            if isinstance(cursor, dict):  # the cluster client answers {node: cursor}
                [cursor] = cursor.values()
            found.extend(as_text(key) for key in keys)
            if int(cursor) == 0:
                return found, False
            if max_found is not None and len(found) >= max_found:
                return found[:max_found], True
        return found, True

    async def _pipeline(self, what: str, build: Callable[[Any], None]) -> list[Any]:
        async def call() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            build(pipe)
            return list(await pipe.execute())

        return await self.io(what, call)

    async def load_meta(self) -> dict[str, str]:
        """The namespace's meta hash (empty when the namespace does not exist)."""
        raw = await self.io("read meta", lambda: self._r.hgetall(self.keys.meta))
        self.meta = {as_text(k): as_text(val) for k, val in raw.items()}
        return self.meta

    def schema_version(self) -> int | None:
        """The meta hash's schema version (None when missing or not a number)."""
        try:
            return int(self.meta["schema_version"])
        except (KeyError, ValueError):
            return None

    async def close(self) -> None:
        """Close the client."""
        await self.client.aclose()

    # -- reads

    async def now(self) -> tuple[datetime, Clock]:
        target = await self.target()
        reply, _ = await self.optional("time", lambda: self._r.time(**target))
        if reply is None:
            return datetime.now(UTC), "local"
        seconds, micros = reply
        return v.from_ms(int(seconds) * 1000 + int(micros) // 1000), "server"

    async def summary(self, *, lease_limit: int = 1000) -> NamespaceSummary:
        now, clock = await self.now()
        now_ms = v.to_ms(now)
        keys = self.keys
        statuses = list(TaskStatus)

        def counts(pipe: Any) -> None:
            for status in statuses:
                pipe.zcard(keys.tasks(status))
            pipe.zcard(keys.set_aside)
            pipe.zrange(keys.tasks(TaskStatus.PENDING), 0, 0)
            pipe.xlen(keys.events)
            pipe.xrange(keys.events, count=1)
            pipe.xrevrange(keys.events, count=1)

        *numbers, set_aside, first_pending, length, first, last = await self._pipeline("status", counts)
        task_counts = TaskCounts(
            **{s.value: int(n) for s, n in zip(statuses, numbers, strict=True)}, set_aside=int(set_aside)
        )
        oldest = None
        if first_pending:
            task_id = as_text(first_pending[0])
            created = await self.io("status", lambda: self._r.hget(keys.task(task_id), "created_at"))
            created_at = None
            if created is not None and as_text(created).isdigit():
                created_at = v.from_ms(int(created))
            oldest = OldestPending(
                task_id=task_id,
                created_at=created_at,
                age_s=None if created_at is None else max(0.0, _seconds(now_ms - v.to_ms(created_at))),
            )
        leases, total = await self._task_leases(lease_limit, now_ms)
        chains, truncated = await self._chains(now_ms)
        return NamespaceSummary(
            namespace=self.namespace,
            backend=self.backend,
            schema_version=self.schema_version(),
            schema_supported=SCHEMA_VERSION,
            created_at=v.from_ms(int(self.meta["created_at"]))
            if self.meta.get("created_at", "").isdigit()
            else None,
            epoch=self.meta.get("epoch"),
            now=now,
            clock=clock,
            tasks=task_counts,
            oldest_pending=oldest,
            leases=LeaseSummary(
                held=task_counts.processing,
                expired=await self._expired_count(now_ms),
                holders=_holders(leases),
                examined=len(leases),
                truncated=total > len(leases),
            ),
            chains=chains,
            chains_truncated=truncated,
            streams=[
                StreamView(
                    name="events",
                    key=keys.events,
                    length=int(length),
                    first_id=as_text(first[0][0]) if first else None,
                    last_id=as_text(last[0][0]) if last else None,
                    maxlen=self.config.events_maxlen,
                )
            ],
            server=await self.server(),
            migration=self.meta.get("migration"),
        )

    async def _expired_count(self, now_ms: int) -> int:
        key = self.keys.tasks(TaskStatus.PROCESSING)
        return int(await self.io("leases", lambda: self._r.zcount(key, "-inf", now_ms)))

    async def _task_leases(self, limit: int, now_ms: int) -> tuple[list[TaskLease], int]:
        key = self.keys.tasks(TaskStatus.PROCESSING)
        total = int(await self.io("leases", lambda: self._r.zcard(key)))
        if limit <= 0 or total == 0:
            return [], total
        entries = await self.io("leases", lambda: self._r.zrange(key, 0, limit - 1, withscores=True))
        ids = [as_text(member) for member, _ in entries]
        rows: list[Any] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]

            def build(pipe: Any, chunk: list[str] = chunk) -> None:
                for task_id in chunk:
                    pipe.hmget(self.keys.task(task_id), ["owner", "token", "attempts"])

            rows.extend(await self._pipeline("leases", build))
        leases = []
        for (member, score), (owner, token, attempts) in zip(entries, rows, strict=True):
            until = int(score)
            leases.append(
                TaskLease(
                    task_id=as_text(member),
                    owner=None if owner is None else as_text(owner),
                    token=int(token) if token is not None and as_text(token).isdigit() else None,
                    lease_until=v.from_ms(until),
                    expired=until <= now_ms,
                    expires_in_s=_seconds(until - now_ms),
                    attempts=int(attempts) if attempts is not None and as_text(attempts).isdigit() else None,
                )
            )
        return leases, total

    async def _chains(self, now_ms: int) -> tuple[list[ChainView], bool]:
        found, truncated = await self.scan(self.keys.chain_pattern)
        ids = sorted({int(ref.ident) for key in found if (ref := parse_key(self.keys, key)) is not None})
        if not ids:
            return [], truncated
        keys = self.keys

        def build(pipe: Any) -> None:
            for chain_id in ids:
                pipe.hmget(
                    keys.chain(chain_id), ["last_block", "lease_owner", "lease_token", "lease_expires_at"]
                )
                pipe.zcard(keys.block_index(chain_id))
                pipe.zrevrange(keys.block_index(chain_id), 0, 0)
                pipe.zcard(keys.chain_tasks(chain_id))

        replies = await self._pipeline("chains", build)
        chains = []
        for i, chain_id in enumerate(ids):
            (cursor, owner, token, expires), blocks, newest, tasks = replies[4 * i : 4 * i + 4]
            lease = None
            if owner is not None:
                expires_ms = int(expires) if expires is not None and as_text(expires).isdigit() else None
                lease = ChainLeaseView(
                    owner=as_text(owner),
                    token=int(token) if token is not None and as_text(token).isdigit() else None,
                    expires_at=None if expires_ms is None else v.from_ms(expires_ms),
                    expired=expires_ms is None or expires_ms <= now_ms,
                    expires_in_s=None if expires_ms is None else _seconds(expires_ms - now_ms),
                )
            chains.append(
                ChainView(
                    chain_id=chain_id,
                    cursor=int(cursor) if cursor is not None and as_text(cursor).isdigit() else None,
                    lease=lease,
                    blocks_saved=int(blocks),
                    newest_block=int(as_text(newest[0])) if newest else None,
                    tasks=int(tasks),
                )
            )
        return chains, truncated

    async def chains(self) -> tuple[list[ChainView], bool]:
        now, _ = await self.now()
        return await self._chains(v.to_ms(now))

    async def task(self, task_id: str) -> TaskView:
        task_id = v.ident(task_id, "task_id")
        key = self.keys.task(task_id)

        def build(pipe: Any) -> None:
            pipe.hgetall(key)
            pipe.zscore(self.keys.set_aside, task_id)

        fields, aside = await self._pipeline("show", build)
        if not fields:
            raise NotFoundError(f"task {task_id!r} not found in namespace {self.namespace!r}")
        return _task_view(key, task_id, fields, set_aside=aside is not None)

    async def _read_tasks(self, ids: list[str], *, set_aside: bool) -> list[TaskView | None]:
        """The views of ``ids`` (None for an id whose hash is gone), one round trip per 500."""
        views: list[TaskView | None] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]

            def build(pipe: Any, chunk: list[str] = chunk) -> None:
                for task_id in chunk:
                    pipe.hgetall(self.keys.task(task_id))

            for task_id, fields in zip(chunk, await self._pipeline("tasks", build), strict=True):
                views.append(
                    _task_view(self.keys.task(task_id), task_id, fields, set_aside=set_aside)
                    if fields
                    else None
                )
        return views

    async def _range(self, index: str, start: int) -> list[Any]:
        async def call() -> list[Any]:
            return list(await self._r.zrange(index, start, start + _BATCH - 1))

        return await self.io("tasks", call)

    async def tasks(
        self,
        *,
        status: TaskStatus | Literal["set-aside"] | None = None,
        avs: str | None = None,
        older_than_s: float | None = None,
        limit: int = 50,
        skip: frozenset[str] = frozenset(),
        owner: str | None = None,
    ) -> list[TaskView]:
        n, avs, cutoff_ms = await _task_filter(self, limit, avs, older_than_s)
        statuses: list[TaskStatus | Literal["set-aside"]] = list(TaskStatus) if status is None else [status]
        result: list[TaskView] = []
        for selected in statuses:
            if len(result) >= n:
                break
            if selected == SET_ASIDE:
                index = self.keys.set_aside
            elif selected is TaskStatus.PENDING and avs is not None:
                index = self.keys.avs_pending(avs)
            else:
                index = self.keys.tasks(TaskStatus(selected))
            examined = 0
            while len(result) < n and examined < _MAX_EXAMINED:
                ids = await self._range(index, examined)
                if not ids:
                    break
                examined += len(ids)
                wanted = [i for i in map(as_text, ids) if i not in skip]
                for view in await self._read_tasks(wanted, set_aside=selected == SET_ASIDE):
                    if view is not None and _matches(view, avs, cutoff_ms, owner) and len(result) < n:
                        result.append(view)
                if len(ids) < _BATCH:
                    break
        return result

    async def leases(self, *, limit: int = 100) -> LeasesView:
        n = v.limit(limit)
        now, clock = await self.now()
        now_ms = v.to_ms(now)
        tasks, total = await self._task_leases(n, now_ms)
        chains, _ = await self._chains(now_ms)
        runners = []
        names, _ = await self.scan(self.keys.runner_pattern)
        if names:

            def build(pipe: Any) -> None:
                for name in names:
                    pipe.get(name)

            values = await self._pipeline("leases", build)
            for key, value in zip(names, values, strict=True):
                ref = parse_key(self.keys, key)
                if value is None or ref is None:
                    continue  # it lapsed in between
                expiry, _, owner = as_text(value).partition(":")
                expires_ms = int(expiry) if expiry.isdigit() else None
                runners.append(
                    RunnerLease(
                        name=ref.ident,
                        owner=owner,
                        expires_at=None if expires_ms is None else v.from_ms(expires_ms),
                        expired=expires_ms is None or expires_ms <= now_ms,
                    )
                )
        return LeasesView(
            now=now,
            clock=clock,
            tasks=tasks,
            tasks_total=total,
            truncated=total > len(tasks),
            chains=[chain for chain in chains if chain.lease is not None],
            runners=sorted(runners, key=lambda r: r.name),
        )

    async def _records(
        self, index: str, key_of: Callable[[str], str], cls: type[RecordT], what: str
    ) -> list[RecordT]:
        ids = [as_text(i) for i in await self.io(what, lambda: self._r.zrange(index, 0, -1))]
        records: list[RecordT] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]

            def build(pipe: Any, chunk: list[str] = chunk) -> None:
                for record_id in chunk:
                    pipe.hgetall(key_of(record_id))

            rows = await self._pipeline(what, build)
            for record_id, fields in zip(chunk, rows, strict=True):
                if not fields:
                    continue
                try:
                    records.append(codec.decode_record(cls, key_of(record_id), fields))
                except CorruptRecordError as exc:
                    log.warning("%s: skipped a record that cannot be read: %s", what, exc)
        return records

    async def performers(self) -> list[PerformerState]:
        states = await self._records(self.keys.performers, self.keys.performer, PerformerState, "performers")
        return [_hide_env(state) for state in states]

    async def inflight(self) -> list[InflightTask]:
        return await self._records(self.keys.inflight_index, self.keys.inflight, InflightTask, "inflight")

    async def deployments(self) -> list[Deployment]:
        return await self._records(self.keys.deployments, self.keys.deployment, Deployment, "deployments")

    async def deployment(self, deployment_id: str) -> DeploymentView:
        deployment_id = v.ident(deployment_id, "deployment_id")
        key = self.keys.deployment(deployment_id)
        history_key = self.keys.deployment_history(deployment_id)

        def build(pipe: Any) -> None:
            pipe.hgetall(key)
            pipe.xrange(history_key)

        fields, entries = await self._pipeline("deployment", build)
        if not fields:
            raise NotFoundError(f"deployment {deployment_id!r} not found in namespace {self.namespace!r}")
        history = []
        for _, entry in entries:
            body = codec.decode_record(_HistoryBody, history_key, entry)
            history.append(
                DeploymentEvent(deployment_id=deployment_id, status=body.status, at=body.at, error=body.error)
            )
        return DeploymentView(deployment=codec.decode_record(Deployment, key, fields), history=history)

    async def _xrange(self, key: str, start: str) -> list[Any]:
        async def call() -> list[Any]:
            return list(await self._r.xrange(key, min=start, max="+", count=_BATCH))

        return await self.io("events", call)

    async def _xread(self, key: str, last: str) -> Any:
        async def call() -> Any:
            return await self._r.xread({key: last}, count=_BATCH, block=1000)

        return await self.io("events", call)

    async def events(
        self, *, after: str | None = None, follow: bool = False, stop: asyncio.Event | None = None
    ) -> AsyncIterator[StoreEvent]:
        if _nothing_after(after):
            return
        key = self.keys.events
        last = after
        while True:
            start = "-" if last is None else f"({last}"
            batch = await self._xrange(key, start)
            if not batch and follow and not (stop is not None and stop.is_set()):
                reply = await self._xread(key, last or "0-0")
                if reply:
                    batch = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
                else:
                    continue
            if not batch:
                return
            for event_id, fields in batch:
                last = as_text(event_id)
                try:
                    yield codec.decode_event(key, event_id, fields)
                except CorruptRecordError as exc:
                    log.warning("events: skipped an entry that cannot be read: %s", exc)
            if stop is not None and stop.is_set():
                return

    async def server(self) -> ServerView:
        target = await self.target()
        info, refused = await self.optional("info", lambda: self._r.info(**target))
        address = self._address()
        mode = self._mode()
        if info is None:
            return ServerView(address=address, mode=mode, unavailable=f"INFO refused: {refused}")
        return server_view(address, mode, info)

    def _address(self) -> str:
        s = self.settings
        if s.cluster is not None:
            return ",".join(s.cluster.nodes)
        if s.sentinel is not None:
            return f"sentinel {','.join(s.sentinel.hosts)} service {s.sentinel.service}"
        return redact(s.url or "")

    def _mode(self) -> str:
        s = self.settings
        if s.cluster is not None:
            return "cluster"
        if s.sentinel is not None or (s.url or "").startswith("redis+sentinel://"):
            return "sentinel"
        return "standalone"


def server_view(address: str, mode: str, info: dict[str, Any]) -> ServerView:
    """A :class:`ServerView` from an ``INFO`` reply (as redis-py parses it)."""

    def num(name: str) -> int | None:
        value = info.get(name)
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None

    def text(name: str) -> str | None:
        value = info.get(name)
        return None if value is None else str(value)

    def flag(name: str) -> bool | None:
        value = num(name)
        return None if value is None else bool(value)

    return ServerView(
        address=address,
        mode=mode,
        redis_version=text("redis_version"),
        role=text("role"),
        uptime_s=num("uptime_in_seconds"),
        used_memory=num("used_memory"),
        used_memory_human=text("used_memory_human"),
        maxmemory=num("maxmemory"),
        maxmemory_policy=text("maxmemory_policy"),
        aof_enabled=flag("aof_enabled"),
        aof_last_write_status=text("aof_last_write_status"),
        aof_rewrite_in_progress=flag("aof_rewrite_in_progress"),
        rdb_last_bgsave_status=text("rdb_last_bgsave_status"),
        rdb_changes_since_last_save=num("rdb_changes_since_last_save"),
        loading=flag("loading"),
        connected_replicas=num("connected_slaves"),
        master_link_status=text("master_link_status"),
    )


# -- the in-process fake ----------------------------------------------------------------


class MemoryNamespaceView(NamespaceView):
    """A namespace of the in-process fake, read from the fake's state in this process."""

    backend = "memory"

    def __init__(self, config: StorageConfig) -> None:
        """Open the fake's stores of the namespace (they share its state)."""
        from ..backends.memory import MemoryAggregatorStore, MemoryExecutorStore

        self.config = config
        self.namespace = config.namespace
        self.keys = Keys(config.namespace)
        self._agg = MemoryAggregatorStore(config.namespace, events_maxlen=config.events_maxlen)
        self._exe = MemoryExecutorStore(config.namespace)

    def _rows(self) -> list[Any]:
        # The fake's own state: this view lives next to it, as the metrics' backend facts do.
        return list(self._agg._s.tasks.values())

    async def now(self) -> tuple[datetime, Clock]:
        return datetime.now(UTC), "local"

    def _leases(self, now: datetime) -> list[TaskLease]:
        rows = [r for r in self._rows() if r.status is TaskStatus.PROCESSING and r.lease_until is not None]
        rows.sort(key=lambda r: (r.lease_until, r.task.task_id))
        return [
            TaskLease(
                task_id=r.task.task_id,
                owner=r.owner,
                token=r.token,
                lease_until=r.lease_until,
                expired=r.lease_until <= now,
                expires_in_s=round((r.lease_until - now).total_seconds(), 3),
                attempts=r.attempts,
            )
            for r in rows
        ]

    async def summary(self, *, lease_limit: int = 1000) -> NamespaceSummary:
        now, clock = await self.now()
        counts = await self._agg.count_tasks()
        pending = sorted((r for r in self._rows() if r.status is TaskStatus.PENDING), key=lambda r: r.seq)
        oldest = None
        if pending:
            first = pending[0]
            oldest = OldestPending(
                task_id=first.task.task_id,
                created_at=first.created_at,
                age_s=max(0.0, round((now - first.created_at).total_seconds(), 3)),
            )
        leases = self._leases(now)
        shown = leases[: max(0, lease_limit)]
        events = self._agg._s.events
        chains, _ = await self.chains()
        return NamespaceSummary(
            namespace=self.namespace,
            backend=self.backend,
            schema_version=SCHEMA_VERSION,
            schema_supported=SCHEMA_VERSION,
            created_at=None,
            epoch=self._agg._epoch,
            now=now,
            clock=clock,
            tasks=TaskCounts(**{s.value: counts[s] for s in TaskStatus}, set_aside=0),
            oldest_pending=oldest,
            leases=LeaseSummary(
                held=len(leases),
                expired=sum(1 for lease in leases if lease.expired),
                holders=_holders(shown),
                examined=len(shown),
                truncated=len(shown) < len(leases),
            ),
            chains=chains,
            chains_truncated=False,
            streams=[
                StreamView(
                    name="events",
                    key="events",
                    length=len(events),
                    first_id=events[0].id if events else None,
                    last_id=events[-1].id if events else None,
                    maxlen=self.config.events_maxlen,
                )
            ],
            server=None,
        )

    async def task(self, task_id: str) -> TaskView:
        task_id = v.ident(task_id, "task_id")
        return _from_record(task_id, await self._agg.get_task(task_id))

    async def tasks(
        self,
        *,
        status: TaskStatus | Literal["set-aside"] | None = None,
        avs: str | None = None,
        older_than_s: float | None = None,
        limit: int = 50,
        skip: frozenset[str] = frozenset(),
        owner: str | None = None,
    ) -> list[TaskView]:
        n, avs, cutoff_ms = await _task_filter(self, limit, avs, older_than_s)
        if status == SET_ASIDE:
            return []  # the fake never meets an unreadable record
        order = {
            TaskStatus.PENDING: lambda r: r.seq,
            TaskStatus.PROCESSING: lambda r: r.lease_until,
            TaskStatus.COMPLETED: lambda r: r.updated_at,
            TaskStatus.FAILED: lambda r: r.updated_at,
        }
        statuses = list(TaskStatus) if status is None else [TaskStatus(status)]
        result: list[TaskView] = []
        for selected in statuses:
            rows = sorted((r for r in self._rows() if r.status is selected), key=order[selected])
            for row in rows:
                view = _from_record(row.task.task_id, row.snapshot())
                if row.task.task_id not in skip and _matches(view, avs, cutoff_ms, owner) and len(result) < n:
                    result.append(view)
        return result

    async def leases(self, *, limit: int = 100) -> LeasesView:
        n = v.limit(limit)
        now, clock = await self.now()
        leases = self._leases(now)
        chains, _ = await self.chains()
        runners = [
            RunnerLease(name=name, owner=owner, expires_at=until, expired=until <= now)
            for name, (owner, until) in sorted(self._agg._s.runners.items())
        ]
        return LeasesView(
            now=now,
            clock=clock,
            tasks=leases[:n],
            tasks_total=len(leases),
            truncated=len(leases) > n,
            chains=[chain for chain in chains if chain.lease is not None],
            runners=runners,
        )

    async def chains(self) -> tuple[list[ChainView], bool]:
        now, _ = await self.now()
        state = self._agg._s
        views = []
        for chain_id in sorted(set(state.cursors) | set(state.leases)):
            lease = state.leases.get(chain_id)
            blocks = state.blocks.get(chain_id, {})
            views.append(
                ChainView(
                    chain_id=chain_id,
                    cursor=state.cursors.get(chain_id),
                    lease=None
                    if lease is None
                    else ChainLeaseView(
                        owner=lease.owner,
                        token=lease.token,
                        expires_at=lease.expires_at,
                        expired=lease.expires_at <= now,
                        expires_in_s=round((lease.expires_at - now).total_seconds(), 3),
                    ),
                    blocks_saved=len(blocks),
                    newest_block=max(blocks) if blocks else None,
                    tasks=sum(1 for r in self._rows() if r.task.chain_id == chain_id),
                )
            )
        return views, False

    async def performers(self) -> list[PerformerState]:
        return [_hide_env(state) for state in await self._exe.list_performer_states()]

    async def inflight(self) -> list[InflightTask]:
        return await self._exe.list_inflight_tasks()

    async def deployments(self) -> list[Deployment]:
        found = self._exe._s.deployments
        return [found[k] for k in sorted(found)]

    async def deployment(self, deployment_id: str) -> DeploymentView:
        deployment = await self._exe.get_deployment(deployment_id)
        return DeploymentView(
            deployment=deployment, history=await self._exe.list_deployment_history(deployment_id)
        )

    async def events(
        self, *, after: str | None = None, follow: bool = False, stop: asyncio.Event | None = None
    ) -> AsyncIterator[StoreEvent]:
        if _nothing_after(after):
            return
        last = after
        while True:
            async for event in self._agg.events(after=last, block_s=1.0 if follow else None):
                last = event.id
                yield event
                if stop is not None and stop.is_set():
                    return
            if not follow or (stop is not None and stop.is_set()):
                return

    async def server(self) -> ServerView | None:
        return None

    async def close(self) -> None:
        await self._agg.close()
        await self._exe.close()


# -- opening ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def inspect_namespace(
    config: StorageConfig | str,
    namespace: str | None = None,
    *,
    retry: RetrySettings | None = None,
    must_exist: bool = True,
    allow_newer_schema: bool = False,
    read_meta: bool = True,
) -> AsyncIterator[NamespaceView]:
    """Open a read-only view of a namespace (``async with inspect_namespace(...) as view``).

    Args:
        config: a :class:`StorageConfig`, ``"memory"`` or a Redis URL.
        namespace: overrides the config's namespace.
        retry: the retry policy of the view's reads (default: the config's).
        must_exist: raise NotFoundError when the namespace's meta hash does not exist.
        allow_newer_schema: open a namespace written by a newer schema too (for
            ``status`` and ``doctor``, which say so rather than decode it).
        read_meta: read the namespace's meta hash now (False: the caller calls
            ``load_meta`` when it wants; ``doctor`` checks the server first, which
            answers even when the namespace's slot does not).

    Raises:
        InvalidInputError: the config or namespace is invalid (before any I/O).
        NotFoundError: the namespace does not exist (``must_exist``).
        SchemaVersionError: the namespace was written by a newer schema.
        StoreUnavailableError: Redis could not be reached within the retry policy.
        StoreConfigurationError: the server refused the connection (password, database).
    """
    cfg = StorageConfig.coerce(config, namespace)
    view: NamespaceView
    if cfg.redis is None:
        view = MemoryNamespaceView(cfg)
        try:
            yield view
        finally:
            await view.close()
        return
    redis_view = RedisNamespaceView(cfg, retry=retry)
    try:
        meta = await redis_view.load_meta() if read_meta else {"-": "not read"}
        if must_exist and not meta:
            raise NotFoundError(
                f"namespace {cfg.namespace!r} not found (no {redis_view.keys.meta} on the server): "
                "check --namespace and the database in the URL"
            )
        version = redis_view.schema_version() if read_meta else None
        if version is not None and version > SCHEMA_VERSION and not allow_newer_schema:
            raise SchemaVersionError(
                f"namespace {cfg.namespace!r} has schema version {version}; this ponos-redis reads "
                f"up to {SCHEMA_VERSION}: upgrade ponos-redis"
            )
        yield redis_view
    finally:
        await redis_view.close()


async def _task_filter(
    view: NamespaceView, limit: int, avs: str | None, older_than_s: float | None
) -> tuple[int, str | None, int | None]:
    """A task listing's validated limit and AVS, and its age cut-off in ms (None: any age)."""
    n = v.limit(limit)
    avs = None if avs is None else v.address(avs, "avs")
    if older_than_s is None:
        return n, avs, None
    now, _ = await view.now()
    return n, avs, v.to_ms(now) - round(v.duration(older_than_s, "older_than_s", allow_zero=True) * 1000)
