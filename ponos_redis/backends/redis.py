"""Both stores on Redis: every multi-key transition is one Lua script from ``lua/``.

A method validates its input (shared with the fake), builds the script's KEYS
and ARGV from :mod:`ponos_redis.keys`, runs it under the one retry policy and
turns the reply into a result or a typed error (:mod:`ponos_redis._ops`).

Time: leases, deadlines and timestamps use the Redis server's ``TIME`` inside
the scripts. A store built with ``clock=`` (tests only) passes that clock's
time instead, so the contract suite can move time on both backends alike.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Self, TypeVar

import msgspec
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from .. import _codec as codec
from .. import _validate as v
from .._clock import Clock
from .._connection import RedisClient, can_rediscover, connect, redact, retrying
from .._durability import CONFIG_NAMES, ServerFacts, assess, redis_version_problem, server_facts
from .._ops import as_text, check, migration_message, schema_message
from .._scripts import SCRIPT_NAMES, script_source
from ..config import RedisSettings, StorageConfig
from ..errors import (
    AlreadyExistsError,
    CorruptRecordError,
    DurabilityError,
    InvalidInputError,
    NamespaceLostError,
    NotFoundError,
    PonosStorageError,
    SchemaVersionError,
    StoreClosedError,
    StoreConfigurationError,
)
from ..keys import SCHEMA_VERSION, Keys
from ..models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    ClaimedTask,
    Consensus,
    CurveType,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    StoreEvent,
    Task,
    TaskRecord,
    TaskStatus,
)
from ._common import (
    CLAIM_BATCH,
    DEADLINE_EXCEEDED,
    MAX_EVENT_ID,
    MAX_KEEP_IDS,
    ORPHAN_BATCH,
    OVERRIDE_EVENT,
    REAP_TRIM_LIMIT,
    SAVE_BATCH,
    TRIM_BATCH,
    StoreLifecycle,
    StoreSettings,
    parse_event_id,
)

__all__ = ["RedisAggregatorStore", "RedisExecutorStore"]

log = logging.getLogger("ponos_redis")
T = TypeVar("T")
RecordT = TypeVar("RecordT", bound=msgspec.Struct)
P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED

_READ_ONLY_SCRIPTS = frozenset({"is_processed", "export_hashes"})
# Scripts that do not take the namespace guard (the meta key and the epoch as
# their last KEYS and ARGV slots), nor wait for replicas: the read-only ones, and
# the one that opens the namespace and so learns the epoch (a store must open,
# and then report DurabilityError on its writes, while replicas are missing).
_UNGUARDED_SCRIPTS = _READ_ONLY_SCRIPTS | {"namespace_open"}
_SAVE_BATCH_BYTES = 8 * 1024 * 1024
# Replies that mean "already applied" when a call is retried after a lost reply.
_NOTFOUND = frozenset({"NOTFOUND"})
_STALE = frozenset({"STALE"})
_REAP_BATCH = 500
# Errors after which a cluster client must rediscover the slot map (see _cluster_attempt).
_CLUSTER_LAYOUT_ERRORS = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.MovedError,
    rexc.AskError,
    rexc.SlotNotCoveredError,
)
_EVENT_BATCH = 500
_LIST_BATCH = 1000


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _save_chunks(encoded: list[list[bytes | str]]) -> list[tuple[int, int]]:
    """Split a batch into [first, last) ranges of at most SAVE_BATCH tasks and about 8 MiB."""
    chunks: list[tuple[int, int]] = []
    first, size = 0, 0
    for i, values in enumerate(encoded):
        weight = sum(len(value) for value in values)
        if i > first and (i - first >= SAVE_BATCH or size + weight > _SAVE_BATCH_BYTES):
            chunks.append((first, i))
            first, size = i, 0
        size += weight
    chunks.append((first, len(encoded)))
    return chunks


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


class _RedisStore(StoreLifecycle):
    """Connection, scripts, retry and lifecycle shared by both Redis stores."""

    def __init__(
        self,
        client: RedisClient,
        config: StorageConfig,
        settings: StoreSettings | None = None,
        *,
        clock: Clock | None = None,
        owns_client: bool = True,
    ) -> None:
        """Wrap a client; :meth:`open` is the usual way in (it also checks the server)."""
        assert config.redis is not None
        settings = settings or StoreSettings.from_config(config)
        self.namespace = config.namespace
        self.keys = Keys(config.namespace)
        self._client = client
        # redis-py's command annotations are unions of sync and async results;
        # command calls go through this Any-typed alias, results are checked here.
        self._r: Any = client
        self._config = config
        self._redis: RedisSettings = config.redis
        self._settings = settings
        self._clock = clock
        self._owns_client = owns_client
        self._cluster = isinstance(client, RedisCluster)
        # Sentinel and Cluster clients find a new master: READONLY is then a failover, not a mistake.
        self._rediscovers = can_rediscover(client)
        self._closed = False
        self._epoch = ""  # the namespace's epoch, learnt at open (_open_namespace)
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    @classmethod
    async def open(
        cls,
        config: StorageConfig | str,
        *,
        namespace: str | None = None,
        clock: Clock | None = None,
        client: RedisClient | None = None,
    ) -> Self:
        """Connect, check durability and the schema version, and return the store.

        Args:
            config: a :class:`StorageConfig` with a ``redis:`` block, or a Redis URL.
            namespace: overrides the config's namespace.
            clock: for tests only: judge time by this clock instead of the server's TIME.
            client: an existing client to use (the store then does not close it).

        Raises:
            InvalidInputError: the config is invalid (before any I/O).
            DurabilityError: ``strict`` durability was asked for and the server cannot keep it.
            SchemaVersionError: the namespace has another schema version (an older one names
                ``ponos-redis migrate``) or its migration has not finished.
            NamespaceLostError: the namespace does not exist and ``create_namespace`` is false.
            StoreConfigurationError: the server refused the connection (password, replica, database)
                or runs a Redis older than 7.
            StoreUnavailableError: Redis could not be reached within the retry policy.
        """
        cfg = StorageConfig.coerce(config, namespace)
        if cfg.redis is None:
            raise InvalidInputError("a Redis store needs a config with a redis: block")
        owns = client is None
        store = cls(client or connect(cfg.redis), cfg, clock=clock, owns_client=owns)
        try:
            await store._check_durability()
            await store._load_scripts()
            await store._open_namespace()
        except BaseException:
            await store._close_client()
            raise
        return store

    # -- lifecycle ---------------------------------------------------------------------

    async def _release(self) -> None:
        await self._close_client()

    async def _close_client(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- I/O -----------------------------------------------------------------------

    def _now(self) -> str:
        """ARGV 'now': empty (the server's TIME decides) unless a test clock was given."""
        if self._clock is None:
            return ""
        return str(v.to_ms(v.timestamp(self._clock(), "clock()")))

    async def _io(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        self._check_open()
        if self._cluster:
            call = functools.partial(self._cluster_attempt, call)
        return await retrying(
            self._redis.retry, call, what, rediscovers=self._rediscovers, client=self._client
        )

    async def _cluster_attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        """One attempt on a cluster, rediscovering the cluster's layout after it failed.

        With redis-py's own retry off, its single commands mark the slot map for
        a refresh after a connection error, but its pipelines do not, and a
        MOVED that a pipeline was told not to follow leaves the map stale: the
        next attempt would go to the same dead or wrong node. Closing the
        client's connections makes the next command rediscover the layout
        (what redis-py's pipeline retry does itself); a no-op when the client
        already marked itself for a refresh.
        """
        try:
            return await call()
        except rexc.MaxConnectionsError:
            raise
        except _CLUSTER_LAYOUT_ERRORS:
            await self._r.aclose()
            raise

    async def _script(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        replayed: frozenset[str] = frozenset(),
    ) -> Any:
        """Run a script (EVALSHA, loading it again after NOSCRIPT).

        With ``durability: replicated`` a writing script is followed, in the
        same round trip, by ``WAIT replicas timeout``.

        Args:
            replayed: reply codes that, on a retried attempt, mean "an earlier
                attempt of this very call was applied" (its reply was lost):
                they are answered as ``OK``. A delete answering NOTFOUND, or a
                release answering STALE, after a lost reply are such cases.
        """
        script = self._scripts[name]
        attempt = 0
        if name not in _UNGUARDED_SCRIPTS:
            keys = [*keys, self.keys.meta]
            args = [*args, self._epoch]

        def settle(reply: Any) -> Any:
            if attempt > 1 and isinstance(reply, list) and reply and as_text(reply[0]) in replayed:
                return [b"OK", b"REPLAY"]
            return reply

        if not self._wait_for_replicas or name in _UNGUARDED_SCRIPTS:

            async def call() -> Any:
                nonlocal attempt
                attempt += 1
                return settle(await script(keys=list(keys), args=list(args)))

            return await self._io(name, call)

        async def call_and_wait() -> Any:
            nonlocal attempt
            attempt += 1
            for _ in range(2):
                pipe = self._r.pipeline(transaction=False)
                # Not pipe.evalsha(): redis-py's cluster pipeline refuses that method by name, while
                # the raw command is routed by its keys like any other.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                try:
                    if self._cluster:
                        # WAIT counts the replicas that have this connection's writes. On a cluster
                        # it goes to the master of the keys' slot, where a pipeline sends both
                        # commands on one connection; a redirected EVALSHA would run elsewhere and
                        # the WAIT confirm nothing, so MOVED/ASK is not followed but retried.
                        await self._r.initialize()
                        node = self._r.get_node_from_key(keys[0])
                        pipe.wait(self._redis.replicas, self._redis.wait_timeout_ms, target_nodes=node)
                        reply, acked = await pipe.execute(allow_redirections=False)
                    else:
                        pipe.wait(self._redis.replicas, self._redis.wait_timeout_ms)
                        reply, acked = await pipe.execute()
                except rexc.NoScriptError:
                    await self._r.script_load(script.script)
                    continue
                reply = settle(reply)
                if not (isinstance(reply, list) and reply and reply[0] != b"OK"):
                    self._confirm(name, int(acked))
                return reply
            raise rexc.NoScriptError(f"script {name} could not be loaded")

        return await self._io(name, call_and_wait)

    @property
    def _wait_for_replicas(self) -> bool:
        return self._redis.durability == "replicated"

    def _confirm(self, what: str, acked: int) -> None:
        if acked < self._redis.replicas:
            raise DurabilityError(
                f"{what}: applied on the master, but only {acked} of {self._redis.replicas} replica(s) "
                f"acknowledged it within {self._redis.wait_timeout_ms} ms; it may not survive a failover"
            )

    async def _hgetall_many(self, keys: list[str]) -> list[dict[bytes, bytes]]:
        """Every hash of ``keys``, one pipeline (one round trip) per 1000 keys."""
        result: list[dict[bytes, bytes]] = []
        for start in range(0, len(keys), _LIST_BATCH):
            chunk = keys[start : start + _LIST_BATCH]

            async def call(chunk: list[str] = chunk) -> list[dict[bytes, bytes]]:
                pipe = self._r.pipeline(transaction=False)
                for key in chunk:
                    pipe.hgetall(key)
                return list(await pipe.execute())

            result.extend(await self._io("read records", call))
        return result

    async def _load_scripts(self) -> None:
        """Load every script once (SCRIPT LOAD on every primary), so the first
        EVALSHA of each call finds it; after a restart or failover EVALSHA
        answers NOSCRIPT and the script is loaded again."""
        sources = [script_source(name) for name in SCRIPT_NAMES]

        async def call() -> None:
            for source in sources:
                await self._r.script_load(source)

        await self._io("load scripts", call)

    async def _open_namespace(self) -> None:
        """Learn the namespace's epoch, creating the namespace if it is missing
        (unless ``create_namespace`` is false), and check its schema version."""
        version, migration = await self._read_namespace(create=self._settings.create_namespace)
        if migration:
            raise SchemaVersionError(migration_message(self.namespace, migration))
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(schema_message(self.namespace, version, SCHEMA_VERSION))

    async def _read_namespace(self, *, create: bool) -> tuple[int, str]:
        """Run namespace_open: learn the epoch; return the schema version and the
        migration under way (``""`` when none). Checks nothing else (the migration
        tool opens namespaces of older versions through this)."""
        meta = self.keys.meta
        reply = await self._script(
            "namespace_open",
            [meta],
            [self._now(), str(SCHEMA_VERSION), uuid.uuid4().hex, "1" if create else "0"],
        )
        if as_text(reply[0]) == "MISSING":
            raise NamespaceLostError(
                f"namespace {self.namespace!r} does not exist and create_namespace is false: create it "
                f"deliberately (ponos-redis namespace create --namespace {self.namespace})"
            )
        epoch, raw, created, migration = check(reply, f"namespace {self.namespace!r}")
        self._epoch = as_text(epoch)
        if int(created):
            log.info(
                "namespace %r did not exist: created it (epoch %s)",
                self.namespace,
                self._epoch,
                extra={"event": "namespace_created", "namespace": self.namespace, "epoch": self._epoch},
            )
        try:
            version = int(raw)
        except (TypeError, ValueError):
            raise CorruptRecordError(meta, f"schema_version is {raw!r}") from None
        return version, as_text(migration)

    @property
    def epoch(self) -> str:
        """The namespace's epoch, as this store opened it (see docs/durability.md)."""
        return self._epoch

    async def set_aside_task_ids(self) -> list[str]:
        """Ids of tasks set aside because their record could not be read, oldest first."""
        ids = await self._io("set_aside_task_ids", lambda: self._r.zrange(self.keys.set_aside, 0, -1))
        return [as_text(i) for i in ids]

    async def server_facts(self) -> ServerFacts:
        """What the server reports about its persistence and replication.

        On a cluster: what the node answering keyless commands reports; the
        durability check at open asks every primary (:meth:`cluster_facts`).
        """
        return await self._io("durability check", self._gather_facts)

    async def cluster_facts(self) -> dict[str, ServerFacts]:
        """On a cluster: each primary's facts, by ``host:port``."""

        async def gather() -> dict[str, ServerFacts]:
            await self._r.initialize()
            return {node.name: await self._gather_facts(node) for node in self._r.get_primaries()}

        return await self._io("durability check", gather)

    async def _gather_facts(self, node: Any = None) -> ServerFacts:
        """The facts of one server (on a cluster: of ``node``, a ``ClusterNode``):
        ``CONFIG GET``, with ``INFO`` for what a denied ``CONFIG`` does not say."""
        target: dict[str, Any] = {} if node is None else {"target_nodes": node}

        async def config_get(name: str) -> str | None:
            try:
                reply = await self._r.config_get(name, **target)
            except rexc.ResponseError:
                return None
            values = list(reply.values()) if isinstance(reply, dict) else []
            return as_text(values[0]) if values else None

        try:
            info = await self._r.info(**target)
        except rexc.ResponseError:
            info = None
        config = {name: await config_get(name) for name in CONFIG_NAMES}
        return server_facts(config, info, cluster=node is not None)

    async def _check_durability(self) -> None:
        """Check the server against the durability policy; refuse a server too old for the
        scripts (StoreConfigurationError, whatever ``strict`` says)."""
        if self._cluster:
            # Every primary holds some namespaces: each must keep the promise.
            by_node = await self.cluster_facts()
            problems = [
                f"{name}: {problem}"
                for name, facts in by_node.items()
                for problem in assess(self._redis.durability, self._redis.replicas, facts)
            ]
            where = "the cluster"
        else:
            facts = await self.server_facts()
            by_node = {"": facts}
            problems = assess(self._redis.durability, self._redis.replicas, facts)
            where = redact(self._redis.url or "the configured Redis")
        for name, node_facts in by_node.items():
            too_old = redis_version_problem(node_facts.redis_version)
            if too_old is not None:
                raise StoreConfigurationError(f"{name or where}: {too_old}")
        if not problems:
            return
        text = f"{where} cannot keep durability {self._redis.durability!r}: " + "; ".join(problems)
        if self._redis.strict:
            raise DurabilityError(text)
        log.warning(
            "%s",
            text,
            extra={
                "event": "durability_warning",
                "namespace": self.namespace,
                "durability": self._redis.durability,
            },
        )


class RedisAggregatorStore(_RedisStore):
    """The aggregator store on Redis. See :class:`ponos_redis.AggregatorStore`."""

    # -- chain ---------------------------------------------------------------------

    async def get_last_processed_block(self, chain_id: int) -> int:
        """The chain's cursor. Raises NotFoundError if it was never set."""
        chain_id = v.integer(chain_id, "chain_id")
        key = self.keys.chain(chain_id)
        raw = await self._io("get_last_processed_block", lambda: self._r.hget(key, "last_block"))
        if raw is None:
            raise NotFoundError(f"chain {chain_id} has no processed block yet")
        try:
            return int(raw)
        except ValueError:
            raise CorruptRecordError(key, f"last_block is {raw!r}") from None

    def _fence(self, fence: int | None) -> str:
        return "" if fence is None else str(v.token(fence, "fence"))

    async def set_last_processed_block(
        self, chain_id: int, block_number: int, *, fence: int | None = None
    ) -> None:
        """Move the cursor forward (same value: no-op; lower: InvalidTransitionError)."""
        chain_id = v.integer(chain_id, "chain_id")
        block_number = v.integer(block_number, "block_number")
        reply = await self._script(
            "advance",
            [self.keys.chain(chain_id), self.keys.events],
            [self._now(), block_number, self._fence(fence), self._settings.events_maxlen, chain_id],
        )
        check(reply, f"chain {chain_id}")

    async def rewind_chain(self, chain_id: int, block_number: int, *, fence: int | None = None) -> None:
        """Move the cursor back after a reorg and drop block records above it."""
        chain_id = v.integer(chain_id, "chain_id")
        block_number = v.integer(block_number, "block_number")
        reply = await self._script(
            "rewind",
            [
                self.keys.chain(chain_id),
                self.keys.blocks(chain_id),
                self.keys.block_index(chain_id),
                self.keys.events,
            ],
            [self._now(), block_number, self._fence(fence), self._settings.events_maxlen, chain_id],
        )
        check(reply, f"chain {chain_id} cursor")

    async def save_block(self, record: BlockRecord) -> None:
        """Save (or replace) a block record; only the last ``block_window`` numbers are kept."""
        record = v.block(record)
        reply = await self._script(
            "save_block",
            [self.keys.blocks(record.chain_id), self.keys.block_index(record.chain_id)],
            [record.number, codec.encode_block(record), self._settings.block_window],
        )
        check(reply, f"chain {record.chain_id} block {record.number}")

    async def get_block(self, chain_id: int, number: int) -> BlockRecord:
        chain_id = v.integer(chain_id, "chain_id")
        number = v.integer(number, "number")
        key = self.keys.blocks(chain_id)
        raw = await self._io("get_block", lambda: self._r.hget(key, str(number)))
        if raw is None:
            raise NotFoundError(f"chain {chain_id} has no block record {number}")
        return codec.decode_block(key, chain_id, number, raw)

    async def delete_block(self, chain_id: int, number: int) -> None:
        chain_id = v.integer(chain_id, "chain_id")
        number = v.integer(number, "number")
        reply = await self._script(
            "delete_block",
            [self.keys.blocks(chain_id), self.keys.block_index(chain_id)],
            [number],
            replayed=_NOTFOUND,
        )
        check(reply, f"chain {chain_id} block record {number}")

    async def acquire_chain_lease(self, chain_id: int, owner: str, *, ttl_s: float) -> ChainLease | None:
        """Take the chain's lease; None if another owner holds a live one."""
        chain_id = v.integer(chain_id, "chain_id")
        owner = v.ident(owner, "owner")
        ttl = v.duration(ttl_s, "ttl_s")
        reply = await self._script(
            "lease_acquire", [self.keys.chain(chain_id), self.keys.fence], [self._now(), owner, _ms(ttl)]
        )
        if as_text(reply[0]) == "HELD":
            return None
        token, expires = check(reply, f"chain {chain_id} lease")
        return ChainLease(
            chain_id=chain_id, owner=owner, token=int(token), expires_at=v.from_ms(int(expires))
        )

    async def renew_chain_lease(self, lease: ChainLease, *, ttl_s: float) -> ChainLease:
        """Extend a live lease, keeping its token; StaleLeaseError if it expired or was lost."""
        lease = v.chain_lease(lease)
        ttl = v.duration(ttl_s, "ttl_s")
        reply = await self._script(
            "lease_renew",
            [self.keys.chain(lease.chain_id)],
            [self._now(), lease.owner, lease.token, _ms(ttl)],
        )
        (expires,) = check(reply, f"chain {lease.chain_id} lease {lease.token}")
        return msgspec.structs.replace(lease, expires_at=v.from_ms(int(expires)))

    async def release_chain_lease(self, lease: ChainLease) -> None:
        """Give the lease up. Already gone: no-op; someone else's now: StaleLeaseError."""
        lease = v.chain_lease(lease)
        reply = await self._script("lease_release", [self.keys.chain(lease.chain_id)], [lease.token])
        check(reply, f"chain {lease.chain_id} lease {lease.token}")

    # -- tasks ---------------------------------------------------------------------

    async def _save(self, batch: list[Task]) -> int:
        if not batch:
            self._check_open()
            return 0
        encoded = [codec.encode_task(task) for task in batch]
        chunks = _save_chunks(encoded)
        if len(chunks) > 1:
            # Each script is all or nothing; check the whole batch first so that a
            # conflict anywhere refuses the batch before any chunk is written.
            await self._refuse_conflicts(batch, encoded)
        created = 0
        for first, last in chunks:
            keys = [self.keys.seq, self.keys.tasks(P), self.keys.events]
            args: list[Any] = [
                self._now(),
                self._settings.events_maxlen,
                uuid.uuid4().hex,
                len(codec.TASK_FIELDS),
                *codec.TASK_FIELDS,
            ]
            for task, values in zip(batch[first:last], encoded[first:last], strict=True):
                keys.append(self.keys.task(task.task_id))
                keys.append(self.keys.avs_pending(task.avs_address))
                keys.append(self.keys.chain_tasks(task.chain_id))
                args.extend(values)
            reply = await self._script("save", keys, args)
            (count,) = check(reply, "save_tasks")
            created += int(count)
        return created

    async def _refuse_conflicts(self, batch: list[Task], encoded: list[list[bytes | str]]) -> None:
        """AlreadyExistsError if a stored task has a task's id but other fields."""
        keys = [self.keys.task(task.task_id) for task in batch]
        stored_rows: list[list[bytes | None]] = []
        for start in range(0, len(keys), _LIST_BATCH):
            chunk = keys[start : start + _LIST_BATCH]

            async def call(chunk: list[str] = chunk) -> list[list[bytes | None]]:
                pipe = self._r.pipeline(transaction=False)
                for key in chunk:
                    pipe.hmget(key, codec.TASK_FIELDS)
                return list(await pipe.execute())

            stored_rows.extend(await self._io("save_tasks", call))
        for task, values, stored in zip(batch, encoded, stored_rows, strict=True):
            if all(value is None for value in stored):
                continue
            if [value or b"" for value in stored] != [_as_bytes(value) for value in values]:
                raise AlreadyExistsError(f"a different task with id {task.task_id!r} already exists")

    async def save_task(self, task: Task) -> bool:
        """Save a new pending task; False if the identical task was already there.

        Raises:
            AlreadyExistsError: a different task has the same id.
            InvalidInputError: the task is invalid.
        """
        return await self._save([v.task(task, self._settings.max_payload_bytes)]) == 1

    async def save_tasks(self, tasks: Iterable[Task]) -> int:
        """Save many tasks; returns how many were created.

        All or nothing up to 500 tasks (and 8 MiB) per call, in one round trip. A
        larger batch is checked whole for conflicts first, then saved in chunks
        of up to 500, each all or nothing.
        """
        return await self._save(v.tasks(tasks, self._settings.max_payload_bytes))

    async def get_task(self, task_id: str) -> TaskRecord:
        task_id = v.ident(task_id, "task_id")
        key = self.keys.task(task_id)
        fields = await self._io("get_task", lambda: self._r.hgetall(key))
        if not fields:
            raise NotFoundError(f"task {task_id!r} not found")
        return codec.decode_task_record(key, fields)

    async def list_pending_tasks(
        self, avs_address: str | None = None, *, limit: int | None = None
    ) -> list[Task]:
        """Pending tasks, oldest first, optionally of one AVS and at most ``limit``.

        Two round trips whatever the count: the index, then every hash at once.
        """
        index = self.keys.tasks(P) if avs_address is None else self.keys.avs_pending(v.address(avs_address))
        n = None if limit is None else v.limit(limit)
        if n == 0:
            self._check_open()
            return []
        stop = -1 if n is None else n - 1
        ids = await self._io("list_pending_tasks", lambda: self._r.zrange(index, 0, stop))
        keys = [self.keys.task(as_text(i)) for i in ids]
        result: list[Task] = []
        unreadable: list[str] = []
        for key, fields in zip(keys, await self._hgetall_many(keys), strict=True):
            if fields and fields.get(b"status") == b"pending":
                try:
                    result.append(codec.decode_task(key, fields))
                except CorruptRecordError as exc:
                    unreadable.append(f"{key} ({exc.reason})")
        if unreadable:
            log.warning(
                "list_pending_tasks skipped %d record(s) that cannot be read: %s",
                len(unreadable),
                "; ".join(unreadable),
                extra={"event": "records_unreadable", "namespace": self.namespace, "count": len(unreadable)},
            )
        return result

    async def count_tasks(self) -> dict[TaskStatus, int]:
        async def call() -> list[int]:
            pipe = self._r.pipeline(transaction=False)
            for status in TaskStatus:
                pipe.zcard(self.keys.tasks(status))
            return list(await pipe.execute())

        counts = await self._io("count_tasks", call)
        return {status: int(n) for status, n in zip(TaskStatus, counts, strict=True)}

    def _all_status_keys(self) -> list[str]:
        return [self.keys.tasks(s) for s in (P, R, C, F)]

    async def update_task_status(self, task_id: str, status: TaskStatus) -> None:
        """The operator's override; see the transition table."""
        task_id = v.ident(task_id, "task_id")
        target = v.task_status(status)
        reply = await self._script(
            "override",
            [
                self.keys.task(task_id),
                *self._all_status_keys(),
                self.keys.fence,
                self.keys.events,
                self.keys.set_aside,
            ],
            [
                self._now(),
                target.value,
                _ms(self._settings.default_lease_s),
                self._settings.events_maxlen,
                task_id,
                OVERRIDE_EVENT[target],
                self.keys.prefix,
            ],
        )
        check(reply, f"task {task_id!r} ({target.value} requested)")

    async def delete_task(self, task_id: str) -> None:
        task_id = v.ident(task_id, "task_id")
        reply = await self._script(
            "delete",
            [self.keys.task(task_id), *self._all_status_keys(), self.keys.events, self.keys.set_aside],
            [self._now(), self._settings.events_maxlen, task_id, self.keys.prefix],
            replayed=_NOTFOUND,
        )
        check(reply, f"task {task_id!r}")

    async def claim_tasks(self, owner: str, *, limit: int, lease_s: float) -> list[ClaimedTask]:
        """Claim up to ``limit`` pending tasks, oldest first.

        A task whose deadline has passed is failed ("deadline exceeded") instead.
        One script call claims at most 500 tasks and looks at most at 1000 index
        entries; a larger claim is made of several calls, each all or nothing.
        If a later call fails, the tasks of the earlier ones are returned (and
        the error logged), so a claim never strands what it claimed. A call that
        met more expired or unreadable tasks than its bound lets this claim
        return early; the next claim goes on. A record that cannot be decoded is
        set aside (see ``docs/keys.md``) and the rest are returned.
        """
        owner = v.ident(owner, "owner")
        n = v.limit(limit)
        lease = v.duration(lease_s, "lease_s")
        if n == 0:
            self._check_open()
            return []
        result: list[ClaimedTask] = []
        while len(result) < n:
            want = min(n - len(result), CLAIM_BATCH)
            try:
                claimed, more = await self._claim_once(owner, want, lease)
            except (NamespaceLostError, SchemaVersionError, StoreClosedError):
                raise
            except PonosStorageError as exc:
                if not result:
                    raise
                log.warning(
                    "claim_tasks: returning the %d task(s) claimed before an error: %s", len(result), exc
                )
                break
            result.extend(claimed)
            if more or len(claimed) < want:
                break
        return result

    async def _claim_once(self, owner: str, want: int, lease: float) -> tuple[list[ClaimedTask], bool]:
        """One claim script: the tasks it claimed (decoded), and whether it stopped at its bound."""
        reply = await self._script(
            "claim",
            [
                self.keys.tasks(P),
                self.keys.tasks(R),
                self.keys.tasks(F),
                self.keys.fence,
                self.keys.events,
                self.keys.claim(uuid.uuid4().hex),
                self.keys.set_aside,
            ],
            [
                self._now(),
                owner,
                want,
                _ms(lease),
                self._settings.events_maxlen,
                self.keys.prefix,
                DEADLINE_EXCEEDED,
            ],
        )
        lease_until_raw, more, *entries = check(reply, "claim_tasks")
        lease_until = v.from_ms(int(lease_until_raw))
        claimed: list[ClaimedTask] = []
        for token, attempt, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            key = self.keys.task(as_text(fields.get(b"task_id", b"?")))
            try:
                task = codec.decode_task(key, fields)
            except CorruptRecordError as exc:
                await self._set_aside_claimed(key, fields, int(token), exc)
                continue
            claimed.append(
                ClaimedTask(task=task, token=int(token), lease_until=lease_until, attempt=int(attempt))
            )
        return claimed, bool(int(more))

    async def _set_aside_claimed(
        self, key: str, fields: dict[bytes, bytes], token: int, problem: CorruptRecordError
    ) -> None:
        """Take a claimed task whose record cannot be decoded out of circulation.

        Its batch-mates are returned as usual. If this fails too, the task keeps
        a lease nobody renews, so the reaper returns it to pending in time.
        """
        task_id = key[len(self.keys.prefix) + len("task:") :]
        log.warning(
            "claim_tasks: set aside task record %s: %s",
            key,
            problem.reason,
            extra={"event": "record_set_aside", "namespace": self.namespace, "task_id": task_id},
        )
        try:
            reply = await self._script(
                "set_aside",
                [key, self.keys.tasks(R), self.keys.set_aside, self.keys.events],
                [self._now(), str(token), self._settings.events_maxlen, task_id],
            )
            check(reply, f"task {task_id!r}")
        except (NamespaceLostError, SchemaVersionError, StoreClosedError):
            raise
        except PonosStorageError as exc:
            log.warning("claim_tasks: could not set aside %s: %s", key, exc)

    def _token(self, token: int) -> str:
        return str(v.token(token))

    async def renew_task_lease(self, task_id: str, token: int, *, lease_s: float) -> None:
        """Extend the lease of a task you hold (even if it expired but was not reaped)."""
        task_id = v.ident(task_id, "task_id")
        lease = v.duration(lease_s, "lease_s")
        reply = await self._script(
            "renew",
            [self.keys.task(task_id), self.keys.tasks(R)],
            [self._now(), self._token(token), _ms(lease), task_id],
        )
        check(reply, f"task {task_id!r}")

    async def complete_task(self, task_id: str, token: int) -> None:
        """Complete a task you hold; repeating it with the same token is a no-op."""
        task_id = v.ident(task_id, "task_id")
        reply = await self._script(
            "complete",
            [self.keys.task(task_id), self.keys.tasks(R), self.keys.tasks(C), self.keys.events],
            [self._now(), self._token(token), self._settings.events_maxlen, task_id],
        )
        check(reply, f"task {task_id!r}")

    async def fail_task(self, task_id: str, token: int, reason: str, *, retry: bool = False) -> None:
        """Fail a task you hold; with ``retry`` it goes back to pending while attempts remain."""
        task_id = v.ident(task_id, "task_id")
        reason = v.string(reason, "reason")
        retry = v.boolean(retry, "retry")
        reply = await self._script(
            "fail",
            [
                self.keys.task(task_id),
                self.keys.tasks(R),
                self.keys.tasks(F),
                self.keys.tasks(P),
                self.keys.fence,
                self.keys.events,
            ],
            [
                self._now(),
                self._token(token),
                reason,
                "1" if retry else "0",
                self._settings.max_attempts,
                self._settings.events_maxlen,
                task_id,
                self.keys.prefix,
            ],
            replayed=_STALE if retry else frozenset(),
        )
        check(reply, f"task {task_id!r}", key=self.keys.task(task_id))

    async def release_task(self, task_id: str, token: int) -> None:
        """Give a task you hold back to pending (it gets a new token)."""
        task_id = v.ident(task_id, "task_id")
        reply = await self._script(
            "release",
            [
                self.keys.task(task_id),
                self.keys.tasks(R),
                self.keys.tasks(P),
                self.keys.fence,
                self.keys.events,
            ],
            [self._now(), self._token(token), self._settings.events_maxlen, task_id, self.keys.prefix],
            replayed=_STALE,
        )
        check(reply, f"task {task_id!r}")

    async def reap_expired_leases(self) -> int:
        """Expired leases go back to pending, or to failed after max_attempts.

        Works in bounded batches; then trims completed and failed tasks past
        their retention, oldest first, in batches of 1,000 until none is left,
        at most 100,000 per call.

        Returns:
            how many leases were reaped.
        """
        total = 0
        for _ in range(1000):
            reply = await self._script(
                "reap",
                [
                    self.keys.tasks(R),
                    self.keys.tasks(P),
                    self.keys.tasks(F),
                    self.keys.fence,
                    self.keys.events,
                    self.keys.set_aside,
                ],
                [
                    self._now(),
                    self._settings.max_attempts,
                    _REAP_BATCH,
                    self._settings.events_maxlen,
                    self.keys.prefix,
                ],
            )
            reaped, more = check(reply, "reap_expired_leases")
            total += int(reaped)
            if not int(more):
                break
        await self._trim(REAP_TRIM_LIMIT)
        return total

    async def trim_finished_tasks(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` completed/failed tasks older than ``retention_s``, oldest first.

        One script call deletes at most 1,000; a larger ``limit`` takes several.
        """
        n = v.limit(limit)
        self._check_open()
        return await self._trim(n)

    async def _trim(self, limit: int) -> int:
        """Trim in script calls of at most TRIM_BATCH entries, until ``limit`` index
        entries were examined or none past retention is left."""
        deleted = examined = 0
        while examined < limit:
            batch = min(TRIM_BATCH, limit - examined)
            reply = await self._script(
                "trim",
                [self.keys.tasks(C), self.keys.tasks(F)],
                [self._now(), _ms(self._settings.retention_s), batch, self.keys.prefix],
            )
            gone, seen = check(reply, "trim_finished_tasks")
            deleted += int(gone)
            examined += int(seen)
            if int(seen) < batch:
                break
        return deleted

    async def fail_orphaned_tasks(
        self,
        chain_id: int,
        above_block: int,
        *,
        keep: Collection[str] = (),
        reason: str = "reorg",
        fence: int | None = None,
    ) -> list[str]:
        """Fail the pending and processing tasks of a chain above a block (after a reorg).

        Each gets a new token, ``last_error = reason`` and a ``task.failed`` event;
        ids in ``keep`` and finished tasks are left alone. One script looks at most
        at 1,000 entries of the chain's task index; a larger range takes several
        calls (the fence is checked by each), so a concurrent delete or trim may
        let one call miss a task: the call is safe to repeat.

        Returns:
            the ids it failed, in (block number, id) order.

        Raises:
            InvalidInputError: a bad argument (``keep``: at most 10,000 valid ids).
            StaleLeaseError: ``fence`` is not the chain's live lease token.
        """
        chain_id = v.integer(chain_id, "chain_id")
        above_block = v.integer(above_block, "above_block")
        kept = v.ids(keep, "keep", MAX_KEEP_IDS)
        reason = v.string(reason, "reason")
        fence_arg = self._fence(fence)
        keys = [
            self.keys.chain_tasks(chain_id),
            self.keys.chain(chain_id),
            self.keys.tasks(P),
            self.keys.tasks(R),
            self.keys.tasks(F),
            self.keys.fence,
            self.keys.events,
            self.keys.set_aside,
        ]
        failed: list[str] = []
        offset = 0
        while True:
            reply = await self._script(
                "fail_orphaned",
                keys,
                [
                    self._now(),
                    above_block,
                    offset,
                    fence_arg,
                    reason,
                    self._settings.events_maxlen,
                    self.keys.prefix,
                    uuid.uuid4().hex,
                    len(kept),
                    *kept,
                ],
            )
            looked_at, removed, *ids = check(reply, f"chain {chain_id}")
            failed.extend(as_text(i) for i in ids)
            if int(looked_at) < ORPHAN_BATCH:
                return failed
            offset += int(looked_at) - int(removed)

    # -- periodic jobs -------------------------------------------------------------

    async def try_runner_lease(self, name: str, owner: str, *, ttl_s: float) -> bool:
        """Take (or, held by ``owner``, extend) the lease of a periodic job for ``ttl_s``.

        Returns:
            True if ``owner`` now holds it; False if another owner holds a live one.
        """
        name = v.ident(name, "name")
        owner = v.ident(owner, "owner")
        ttl = v.duration(ttl_s, "ttl_s")
        reply = await self._script("runner_lease", [self.keys.runner(name)], [self._now(), owner, _ms(ttl)])
        if as_text(reply[0]) == "HELD":
            return False
        check(reply, f"runner lease {name!r}")
        return True

    # -- config cache --------------------------------------------------------------

    async def _put_hash(self, key: str, fields: dict[str, bytes | str]) -> None:
        flat: list[Any] = []
        for name, value in fields.items():
            flat.extend((name, value))
        check(await self._script("put_hash", [key], flat), key)

    async def _get_hash(self, key: str) -> dict[bytes, bytes]:
        return await self._io("read config", lambda: self._r.hgetall(key))

    async def save_operator_set_config(
        self, avs_address: str, operator_set_id: int, config: OperatorSetTaskConfig
    ) -> None:
        key = self.keys.operator_set_config(
            v.address(avs_address, "avs_address"), v.integer(operator_set_id, "operator_set_id")
        )
        config = v.operator_set_config(config, self._settings.max_payload_bytes)
        fields = codec.encode_record(config, exclude=frozenset({"consensus"}))
        fields["consensus_type"] = str(config.consensus.type.value)
        fields["consensus_threshold"] = str(config.consensus.threshold)
        await self._put_hash(key, fields)

    async def get_operator_set_config(self, avs_address: str, operator_set_id: int) -> OperatorSetTaskConfig:
        avs = v.address(avs_address, "avs_address")
        set_id = v.integer(operator_set_id, "operator_set_id")
        key = self.keys.operator_set_config(avs, set_id)
        fields = await self._get_hash(key)
        if not fields:
            raise NotFoundError(f"no task config for operator set {set_id} of {avs}")
        consensus = codec.decode_record(
            Consensus,
            key,
            {b"type": fields.get(b"consensus_type"), b"threshold": fields.get(b"consensus_threshold")},
        )
        body = codec.decode_record(_OpsetBody, key, fields)
        return OperatorSetTaskConfig(
            task_sla_s=body.task_sla_s,
            curve_type=body.curve_type,
            task_metadata=body.task_metadata,
            consensus=consensus,
        )

    async def save_avs_config(self, avs_address: str, config: AvsConfig) -> None:
        key = self.keys.avs_config(v.address(avs_address, "avs_address"))
        await self._put_hash(key, codec.encode_record(v.avs_config(config)))

    async def get_avs_config(self, avs_address: str) -> AvsConfig:
        avs = v.address(avs_address, "avs_address")
        key = self.keys.avs_config(avs)
        fields = await self._get_hash(key)
        if not fields:
            raise NotFoundError(f"no AVS config for {avs}")
        return codec.decode_record(AvsConfig, key, fields)

    # -- events --------------------------------------------------------------------

    async def events(
        self, *, after: str | None = None, block_s: float | None = None
    ) -> AsyncIterator[StoreEvent]:
        """Events in delivery order, after ``after`` (an event id) or from the oldest kept.

        With ``block_s=None`` it ends once everything present was delivered; with
        ``block_s=x`` it waits up to x seconds for each next event.
        """
        last_possible = after is not None and parse_event_id(after) == MAX_EVENT_ID
        wait = None if block_s is None else v.duration(block_s, "block_s", allow_zero=True)
        if last_possible:
            # Nothing can follow the greatest id (and XRANGE refuses to start after it).
            self._check_open()
            if wait:
                await asyncio.sleep(wait)
            return
        key = self.keys.events
        last = after
        while True:
            start = "-" if last is None else f"({last}"
            batch = await self._io(
                "events",
                functools.partial(self._r.xrange, key, min=start, max="+", count=_EVENT_BATCH),
            )
            if not batch and wait:
                batch = await self._wait_for_events(key, last or "0-0", wait)
            if not batch:
                return
            for event_id, fields in batch:
                event = codec.decode_event(key, event_id, fields)
                last = event.id
                yield event

    async def _wait_for_events(self, key: str, last: str, wait: float) -> list[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Block in slices shorter than the socket timeout, so a long wait never
        # looks like a dead connection.
        while (left := deadline - loop.time()) > 0:
            block_ms = max(1, int(min(left, 1.0) * 1000))
            reply = await self._io(
                "events",
                functools.partial(self._r.xread, {key: last}, count=_EVENT_BATCH, block=block_ms),
            )
            if reply:
                entries: list[Any] = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
                return entries
        return []


class _OpsetBody(msgspec.Struct, frozen=True, kw_only=True):
    task_sla_s: float
    curve_type: CurveType
    task_metadata: bytes


class RedisExecutorStore(_RedisStore):
    """The executor store on Redis. See :class:`ponos_redis.ExecutorStore`."""

    async def _put(self, key: str, index: str, record_id: str, fields: dict[str, bytes | str]) -> None:
        flat: list[Any] = [record_id]
        for name, value in fields.items():
            flat.extend((name, value))
        check(await self._script("put_record", [key, index], flat), f"record {record_id!r}")

    async def _delete(self, key: str, index: str, record_id: str, what: str) -> None:
        check(await self._script("delete_record", [key, index], [record_id], replayed=_NOTFOUND), what)

    async def _list(self, index: str, key_of: Callable[[str], str], cls: type[RecordT]) -> list[RecordT]:
        ids = await self._io("list", lambda: self._r.zrange(index, 0, -1))
        keys = [key_of(as_text(i)) for i in ids]
        return [
            codec.decode_record(cls, key, fields)
            for key, fields in zip(keys, await self._hgetall_many(keys), strict=True)
            if fields
        ]

    async def _get(self, key: str, cls: type[RecordT], what: str) -> RecordT:
        fields = await self._io("get", lambda: self._r.hgetall(key))
        if not fields:
            raise NotFoundError(f"{what} not found")
        return codec.decode_record(cls, key, fields)

    async def save_performer_state(self, state: PerformerState) -> None:
        state = v.performer(state)
        await self._put(
            self.keys.performer(state.performer_id),
            self.keys.performers,
            state.performer_id,
            codec.encode_record(state),
        )

    async def get_performer_state(self, performer_id: str) -> PerformerState:
        performer_id = v.ident(performer_id, "performer_id")
        return await self._get(
            self.keys.performer(performer_id), PerformerState, f"performer {performer_id!r}"
        )

    async def list_performer_states(self) -> list[PerformerState]:
        return await self._list(self.keys.performers, self.keys.performer, PerformerState)

    async def delete_performer_state(self, performer_id: str) -> None:
        performer_id = v.ident(performer_id, "performer_id")
        await self._delete(
            self.keys.performer(performer_id),
            self.keys.performers,
            performer_id,
            f"performer {performer_id!r}",
        )

    async def save_inflight_task(self, task: InflightTask) -> None:
        task = v.inflight(task)
        await self._put(
            self.keys.inflight(task.task_id),
            self.keys.inflight_index,
            task.task_id,
            codec.encode_record(task),
        )

    async def get_inflight_task(self, task_id: str) -> InflightTask:
        task_id = v.ident(task_id, "task_id")
        return await self._get(self.keys.inflight(task_id), InflightTask, f"inflight task {task_id!r}")

    async def list_inflight_tasks(self) -> list[InflightTask]:
        return await self._list(self.keys.inflight_index, self.keys.inflight, InflightTask)

    async def delete_inflight_task(self, task_id: str) -> None:
        task_id = v.ident(task_id, "task_id")
        await self._delete(
            self.keys.inflight(task_id), self.keys.inflight_index, task_id, f"inflight task {task_id!r}"
        )

    async def save_deployment(self, deployment: Deployment) -> None:
        """Save (or replace) a deployment; its history gets an event with the saved status."""
        deployment = v.deployment(deployment)
        flat: list[Any] = [self._now(), self._settings.history_maxlen, deployment.deployment_id]
        for name, value in codec.encode_record(deployment).items():
            flat.extend((name, value))
        reply = await self._script(
            "deployment_save",
            [
                self.keys.deployment(deployment.deployment_id),
                self.keys.deployment_history(deployment.deployment_id),
                self.keys.deployments,
            ],
            flat,
        )
        check(reply, f"deployment {deployment.deployment_id!r}")

    async def get_deployment(self, deployment_id: str) -> Deployment:
        deployment_id = v.ident(deployment_id, "deployment_id")
        return await self._get(
            self.keys.deployment(deployment_id), Deployment, f"deployment {deployment_id!r}"
        )

    async def update_deployment_status(
        self, deployment_id: str, status: DeploymentStatus, *, error: str = ""
    ) -> None:
        """Move a deployment along pending -> deploying -> running | failed."""
        deployment_id = v.ident(deployment_id, "deployment_id")
        target = v.deployment_status(status)
        error = v.string(error, "error")
        reply = await self._script(
            "deployment_update",
            [self.keys.deployment(deployment_id), self.keys.deployment_history(deployment_id)],
            [self._now(), target.value, error, self._settings.history_maxlen],
        )
        check(reply, f"deployment {deployment_id!r} ({target.value} requested)")

    async def list_deployment_history(self, deployment_id: str) -> list[DeploymentEvent]:
        deployment_id = v.ident(deployment_id, "deployment_id")
        key = self.keys.deployment_history(deployment_id)
        entries = await self._io("list_deployment_history", lambda: self._r.xrange(key))
        if not entries:
            raise NotFoundError(f"deployment {deployment_id!r} not found")
        history = []
        for _, fields in entries:
            body = codec.decode_record(_HistoryBody, key, fields)
            history.append(
                DeploymentEvent(deployment_id=deployment_id, status=body.status, at=body.at, error=body.error)
            )
        return history

    async def mark_task_processed(self, task_id: str) -> bool:
        """Atomically mark a task processed: True the first time, False afterwards."""
        task_id = v.ident(task_id, "task_id")
        reply = await self._script(
            "mark_processed",
            [self.keys.processed(task_id)],
            [self._now(), _ms(self._settings.processed_ttl_s), uuid.uuid4().hex],
        )
        if isinstance(reply, list):
            check(reply, f"task {task_id!r}")  # the namespace guard refused
        return int(reply) == 1

    async def is_task_processed(self, task_id: str) -> bool:
        task_id = v.ident(task_id, "task_id")
        reply = await self._script("is_processed", [self.keys.processed(task_id)], [self._now()])
        return int(reply) == 1


class _HistoryBody(msgspec.Struct, frozen=True, kw_only=True):
    status: DeploymentStatus
    at: datetime
    error: str = ""
