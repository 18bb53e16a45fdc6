"""The in-process fake: both stores, in memory, with the Redis backend's semantics.

It implements the store interfaces, not Redis: it shares models, validation,
the transition table and errors with the Redis backend, never keys or scripts.
Two stores opened on the same namespace in one process share state, as
replicas sharing one Redis do. Every call yields to the event loop once before
it acts (as real I/O would) and then runs to completion without awaiting, so
each call is atomic, like a Lua script, however many asyncio tasks share a store.

Time comes from an injectable clock (default: the system clock), so tests can
expire leases, deadlines and markers by moving a :class:`ManualClock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import _validate as v
from .._clock import Clock, system_clock
from .._ops import namespace_lost_message, schema_message
from ..errors import (
    AlreadyExistsError,
    InvalidTransitionError,
    NamespaceLostError,
    NotFoundError,
    SchemaVersionError,
    StaleLeaseError,
)
from ..keys import SCHEMA_VERSION
from ..models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    ClaimedTask,
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
from ..transitions import (
    FINAL_TASK_STATUSES,
    TASK_OPERATIONS,
    TaskOp,
    deployment_transition_allowed,
    override_allowed,
)
from ._common import (
    CLAIM_BATCH,
    CLAIM_LOOK_AT,
    DEADLINE_EXCEEDED,
    MANUAL_OWNER,
    MAX_KEEP_IDS,
    OVERRIDE_EVENT,
    REAP_TRIM_LIMIT,
    StoreLifecycle,
    StoreSettings,
    parse_event_id,
    reap_error,
    retry_exhausted_error,
)

__all__ = ["MemoryAggregatorStore", "MemoryExecutorStore", "reset_memory_namespaces"]

P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED
# Expired de-dup markers dropped by each mark_task_processed (see _sweep_processed).
_SWEEP_PER_MARK = 2


@dataclass
class _TaskRow:
    task: Task
    seq: int
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    owner: str | None = None
    token: int | None = None
    lease_until: datetime | None = None
    last_error: str | None = None

    def snapshot(self) -> TaskRecord:
        return TaskRecord(
            task=self.task,
            status=self.status,
            attempts=self.attempts,
            owner=self.owner,
            token=self.token,
            lease_until=self.lease_until,
            created_at=self.created_at,
            updated_at=self.updated_at,
            last_error=self.last_error,
        )


class _PendingIndex:
    """The pending tasks by (seq, id): a heap with lazy removal.

    ``members`` maps each pending id to its seq; a heap entry whose id is no longer
    a member under that seq is stale and dropped when it reaches the top. Adding
    is O(log n), removing O(1), taking the oldest O(log n) amortised.
    """

    def __init__(self) -> None:
        self.heap: list[tuple[int, str]] = []
        self.members: dict[str, int] = {}

    def add(self, seq: int, task_id: str) -> None:
        self.members[task_id] = seq
        heapq.heappush(self.heap, (seq, task_id))

    def discard(self, task_id: str) -> None:
        self.members.pop(task_id, None)
        if len(self.heap) > 2 * len(self.members) + 64:
            self.heap = [(seq, i) for i, seq in self.members.items()]
            heapq.heapify(self.heap)

    def first(self) -> str | None:
        """The id of the oldest pending task (it stays pending), or None."""
        heap, members = self.heap, self.members
        while heap:
            seq, task_id = heap[0]
            if members.get(task_id) == seq:
                return task_id
            heapq.heappop(heap)
        return None

    def ordered(self) -> list[str]:
        """Every pending id, oldest first."""
        return [task_id for _, task_id in sorted((seq, i) for i, seq in self.members.items())]


@dataclass
class _AggregatorState:
    tasks: dict[str, _TaskRow] = field(default_factory=dict)
    # The pending tasks in claim order, so a claim never sorts the namespace; kept in
    # step by MemoryAggregatorStore._set_status.
    pending: _PendingIndex = field(default_factory=_PendingIndex)
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    cursors: dict[int, int] = field(default_factory=dict)
    blocks: dict[int, dict[int, BlockRecord]] = field(default_factory=dict)
    leases: dict[int, ChainLease] = field(default_factory=dict)
    opsets: dict[tuple[str, int], OperatorSetTaskConfig] = field(default_factory=dict)
    avs: dict[str, AvsConfig] = field(default_factory=dict)
    events: deque[StoreEvent] = field(default_factory=deque)
    last_event: tuple[int, int] = (0, 0)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    fence: list[int] = field(default_factory=lambda: [0])
    # periodic jobs' single-runner leases: name -> (owner, expiry)
    runners: dict[str, tuple[str, datetime]] = field(default_factory=dict)


@dataclass
class _ExecutorState:
    performers: dict[str, PerformerState] = field(default_factory=dict)
    inflight: dict[str, InflightTask] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    history: dict[str, deque[DeploymentEvent]] = field(default_factory=dict)
    processed: dict[str, datetime] = field(default_factory=dict)
    # (expiry, task id) of every marker set, soonest first: what the sweep drops
    # (an entry whose marker was set again later is skipped).
    processed_expiry: list[tuple[datetime, str]] = field(default_factory=list)


# Namespaces outlive the stores that use them, like a Redis namespace outlives
# its clients.
_AGGREGATORS: dict[str, _AggregatorState] = {}
_EXECUTORS: dict[str, _ExecutorState] = {}
# Each namespace's epoch (Redis keeps it in the namespace's meta hash): made when
# the namespace is created, gone when it is reset, checked by every write.
_EPOCHS: dict[str, str] = {}
# Each namespace's schema version (Redis keeps it in the meta hash too): set when
# the namespace is created, moved on by ponos_redis.ops.migrate, checked by every
# write as the scripts' namespace guard does.
_SCHEMAS: dict[str, int] = {}


def reset_memory_namespaces(*namespaces: str) -> None:
    """Forget the state of the given memory namespaces (all of them when none are given)."""
    if not namespaces:
        _AGGREGATORS.clear()
        _EXECUTORS.clear()
        _EPOCHS.clear()
        _SCHEMAS.clear()
    for ns in namespaces:
        _AGGREGATORS.pop(ns, None)
        _EXECUTORS.pop(ns, None)
        _EPOCHS.pop(ns, None)
        _SCHEMAS.pop(ns, None)


class _MemoryStore(StoreLifecycle):
    # The schema version this store writes (a test may make an "older" store).
    _schema_version: int = SCHEMA_VERSION

    def __init__(self, namespace: str, clock: Clock | None, *, create_namespace: bool = True) -> None:
        self.namespace = v.namespace(namespace)
        self._clock = clock or system_clock
        self._closed = False
        epoch = _EPOCHS.get(self.namespace)
        if epoch is None:
            if not v.boolean(create_namespace, "create_namespace"):
                raise NamespaceLostError(
                    f"namespace {self.namespace!r} does not exist and create_namespace is false"
                )
            epoch = _EPOCHS[self.namespace] = uuid.uuid4().hex
            _SCHEMAS[self.namespace] = self._schema_version
        self._epoch = epoch
        version = _SCHEMAS.setdefault(self.namespace, self._schema_version)
        if version != self._schema_version:
            raise SchemaVersionError(schema_message(self.namespace, version, self._schema_version))

    async def _enter(self) -> datetime:
        """Yield once, as I/O would, then check the store is open; return 'now'."""
        await asyncio.sleep(0)
        self._check_open()
        return v.timestamp(self._clock(), "clock()")

    async def _enter_write(self, subject: str = "write") -> datetime:
        """:meth:`_enter`, then the namespace guard of every write."""
        now = await self._enter()
        current = _EPOCHS.get(self.namespace)
        version = _SCHEMAS.get(self.namespace)
        if version is not None and version != self._schema_version:
            raise SchemaVersionError(
                f"{subject}: refused, nothing was written: "
                + schema_message(self.namespace, version, self._schema_version)
            )
        if current != self._epoch:
            raise NamespaceLostError(namespace_lost_message(subject, current or ""))
        return now


class MemoryAggregatorStore(_MemoryStore):
    """The aggregator store, in process. See :class:`ponos_redis.AggregatorStore`.

    The other keywords (``default_lease_s``, ``max_attempts``, ``retention_s``,
    ``max_payload_bytes``, ``events_maxlen``, ``block_window``, ``history_maxlen``,
    ``processed_ttl_s``, ``create_namespace``) are as in the ``storage:`` config.

    Args:
        namespace: stores with the same namespace in one process share state.
        clock: returns the current aware UTC datetime; default the system clock.
    """

    def __init__(
        self,
        namespace: str = "default",
        *,
        clock: Clock | None = None,
        default_lease_s: float = 30.0,
        max_attempts: int = 5,
        retention_s: float = 86400.0,
        max_payload_bytes: int = 1_048_576,
        events_maxlen: int = 100_000,
        block_window: int = 10_000,
        history_maxlen: int = 1_000,
        processed_ttl_s: float = 604_800.0,
        create_namespace: bool = True,
    ) -> None:
        super().__init__(namespace, clock, create_namespace=create_namespace)
        self._settings = StoreSettings.build(
            default_lease_s=default_lease_s,
            max_attempts=max_attempts,
            retention_s=retention_s,
            max_payload_bytes=max_payload_bytes,
            events_maxlen=events_maxlen,
            block_window=block_window,
            history_maxlen=history_maxlen,
            processed_ttl_s=processed_ttl_s,
        )

    @property
    def _s(self) -> _AggregatorState:
        state = _AGGREGATORS.get(self.namespace)
        if state is None:  # not setdefault: that would build a new state on every access
            state = _AGGREGATORS[self.namespace] = _AggregatorState()
        return state

    # -- helpers -----------------------------------------------------------------

    def _next_token(self, now: datetime) -> int:
        """One more than the last token, and never below the clock in microseconds
        (as the scripts do: see ``next_token`` in lua/_lib.lua)."""
        fence = self._s.fence
        fence[0] = max(fence[0] + 1, v.to_ms(now) * 1000)
        return fence[0]

    def _emit(
        self,
        now: datetime,
        kind: str,
        subject: str,
        status: str | None = None,
        owner: str | None = None,
        token: int | None = None,
    ) -> None:
        ms = v.to_ms(now)
        last_ms, last_n = self._s.last_event
        event_id = (ms, 0) if ms > last_ms else (last_ms, last_n + 1)
        self._s.last_event = event_id
        self._s.events.append(
            StoreEvent(
                id=f"{event_id[0]}-{event_id[1]}",
                kind=kind,
                subject=subject,
                status=status,
                owner=owner,
                token=token,
                at=now,
            )
        )
        while len(self._s.events) > self._settings.events_maxlen:
            self._s.events.popleft()
        waiters, self._s.waiters = self._s.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _row(self, task_id: str) -> _TaskRow:
        row = self._s.tasks.get(task_id)
        if row is None:
            raise NotFoundError(f"task {task_id!r} not found")
        return row

    def _held_row(self, task_id: object, token: object, op: TaskOp) -> _TaskRow:
        """The row of a token operation: NotFound, then StaleLease, then the status rule."""
        row = self._row(v.ident(task_id, "task_id"))
        if row.token != v.token(token):
            raise StaleLeaseError(
                f"task {row.task.task_id!r}: token {token} is not the current one ({row.token})"
            )
        required, _ = TASK_OPERATIONS[op]
        if row.status != required:
            raise InvalidTransitionError(
                f"cannot {op.value} task {row.task.task_id!r}: it is {row.status.value}, not {required.value}"
            )
        return row

    def _set_status(self, row: _TaskRow, status: TaskStatus) -> None:
        """Change a row's status, keeping the sorted pending index in step."""
        if row.status == P and status != P:
            self._s.pending.discard(row.task.task_id)
        elif status == P and row.status != P:
            self._s.pending.add(row.seq, row.task.task_id)
        row.status = status

    def _to_pending(self, row: _TaskRow, now: datetime) -> None:
        self._set_status(row, P)
        row.owner = None
        row.lease_until = None
        row.token = self._next_token(now)
        row.updated_at = now

    # -- chain ---------------------------------------------------------------------

    def _check_fence(self, chain_id: int, fence: int | None, now: datetime) -> None:
        if fence is None:
            return
        lease = self._s.leases.get(chain_id)
        if lease is None or lease.token != fence or lease.expires_at <= now:
            raise StaleLeaseError(f"chain {chain_id}: fence {fence} is not the live lease's token")

    async def get_last_processed_block(self, chain_id: int) -> int:
        """The chain's cursor. Raises NotFoundError if it was never set."""
        chain_id = v.integer(chain_id, "chain_id")
        await self._enter()
        if chain_id not in self._s.cursors:
            raise NotFoundError(f"chain {chain_id} has no processed block yet")
        return self._s.cursors[chain_id]

    async def set_last_processed_block(
        self, chain_id: int, block_number: int, *, fence: int | None = None
    ) -> None:
        """Move the cursor forward (same value: no-op; lower: InvalidTransitionError)."""
        chain_id = v.integer(chain_id, "chain_id")
        block_number = v.integer(block_number, "block_number")
        fence = None if fence is None else v.token(fence, "fence")
        now = await self._enter_write()
        self._check_fence(chain_id, fence, now)
        current = self._s.cursors.get(chain_id)
        if current is not None and block_number < current:
            raise InvalidTransitionError(
                f"chain {chain_id}: cursor is at {current}; {block_number} would move it back "
                "(use rewind_chain after a reorg)"
            )
        if current == block_number:
            return
        self._s.cursors[chain_id] = block_number
        self._emit(now, "chain.advanced", str(chain_id), token=fence)

    async def rewind_chain(self, chain_id: int, block_number: int, *, fence: int | None = None) -> None:
        """Move the cursor back after a reorg and drop block records above it."""
        chain_id = v.integer(chain_id, "chain_id")
        block_number = v.integer(block_number, "block_number")
        fence = None if fence is None else v.token(fence, "fence")
        now = await self._enter_write()
        self._check_fence(chain_id, fence, now)
        current = self._s.cursors.get(chain_id)
        if current is None:
            raise NotFoundError(f"chain {chain_id} has no processed block to rewind")
        if block_number > current:
            raise InvalidTransitionError(
                f"chain {chain_id}: cannot rewind to {block_number}, above the cursor {current}"
            )
        self._s.cursors[chain_id] = block_number
        blocks = self._s.blocks.get(chain_id, {})
        for number in [n for n in blocks if n > block_number]:
            del blocks[number]
        self._emit(now, "chain.rewound", str(chain_id), token=fence)

    async def save_block(self, record: BlockRecord) -> None:
        """Save (or replace) a block record; only the last ``block_window`` numbers are kept."""
        record = v.block(record)
        await self._enter_write()
        blocks = self._s.blocks.setdefault(record.chain_id, {})
        blocks[record.number] = record
        floor = max(blocks) - self._settings.block_window
        for number in [n for n in blocks if n <= floor]:
            del blocks[number]

    async def get_block(self, chain_id: int, number: int) -> BlockRecord:
        chain_id = v.integer(chain_id, "chain_id")
        number = v.integer(number, "number")
        await self._enter()
        record = self._s.blocks.get(chain_id, {}).get(number)
        if record is None:
            raise NotFoundError(f"chain {chain_id} has no block record {number}")
        return record

    async def delete_block(self, chain_id: int, number: int) -> None:
        chain_id = v.integer(chain_id, "chain_id")
        number = v.integer(number, "number")
        await self._enter_write()
        blocks = self._s.blocks.get(chain_id, {})
        if number not in blocks:
            raise NotFoundError(f"chain {chain_id} has no block record {number}")
        del blocks[number]

    async def acquire_chain_lease(self, chain_id: int, owner: str, *, ttl_s: float) -> ChainLease | None:
        """Take the chain's lease; None if another owner holds a live one."""
        chain_id = v.integer(chain_id, "chain_id")
        owner = v.ident(owner, "owner")
        ttl = v.duration(ttl_s, "ttl_s")
        now = await self._enter_write()
        current = self._s.leases.get(chain_id)
        expires_at = v.timestamp(now + timedelta(seconds=ttl), "expires_at")
        if current is not None and current.expires_at > now:
            if current.owner != owner:
                return None
            token = current.token
        else:
            token = self._next_token(now)
        lease = ChainLease(chain_id=chain_id, owner=owner, token=token, expires_at=expires_at)
        self._s.leases[chain_id] = lease
        return lease

    def _current_lease(self, lease: ChainLease) -> ChainLease | None:
        return self._s.leases.get(lease.chain_id)

    async def renew_chain_lease(self, lease: ChainLease, *, ttl_s: float) -> ChainLease:
        """Extend a live lease, keeping its token; StaleLeaseError if it expired or was lost."""
        lease = v.chain_lease(lease)
        ttl = v.duration(ttl_s, "ttl_s")
        now = await self._enter_write()
        current = self._current_lease(lease)
        if (
            current is None
            or current.token != lease.token
            or current.owner != lease.owner
            or current.expires_at <= now
        ):
            raise StaleLeaseError(f"chain {lease.chain_id}: lease {lease.token} is no longer current")
        renewed = ChainLease(
            chain_id=current.chain_id,
            owner=current.owner,
            token=current.token,
            expires_at=v.timestamp(now + timedelta(seconds=ttl), "expires_at"),
        )
        self._s.leases[current.chain_id] = renewed
        return renewed

    async def release_chain_lease(self, lease: ChainLease) -> None:
        """Give the lease up. Already gone: no-op; someone else's now: StaleLeaseError."""
        lease = v.chain_lease(lease)
        await self._enter_write()
        current = self._current_lease(lease)
        if current is None:
            return
        if current.token != lease.token:
            raise StaleLeaseError(f"chain {lease.chain_id}: lease {lease.token} is no longer current")
        del self._s.leases[current.chain_id]

    # -- tasks ---------------------------------------------------------------------

    def _insert(self, task: Task, now: datetime) -> bool:
        existing = self._s.tasks.get(task.task_id)
        if existing is not None:
            return False
        row = self._s.tasks[task.task_id] = _TaskRow(
            task=task, seq=next(self._s.seq), status=P, created_at=now, updated_at=now
        )
        self._s.pending.add(row.seq, task.task_id)
        self._emit(now, "task.saved", task.task_id, P.value)
        return True

    def _check_same(self, task: Task) -> None:
        existing = self._s.tasks.get(task.task_id)
        if existing is not None and existing.task != task:
            raise AlreadyExistsError(f"a different task with id {task.task_id!r} already exists")

    async def save_task(self, task: Task) -> bool:
        """Save a new pending task.

        Returns:
            True if created; False if the identical task was already there.

        Raises:
            AlreadyExistsError: a different task has the same id.
            InvalidInputError: the task is invalid.
        """
        task = v.task(task, self._settings.max_payload_bytes)
        now = await self._enter_write()
        self._check_same(task)
        return self._insert(task, now)

    async def save_tasks(self, tasks: Iterable[Task]) -> int:
        """Save many tasks, all or nothing; returns how many were created."""
        batch = v.tasks(tasks, self._settings.max_payload_bytes)
        now = await self._enter_write()
        for task in batch:
            self._check_same(task)
        return sum(self._insert(task, now) for task in batch)

    async def get_task(self, task_id: str) -> TaskRecord:
        task_id = v.ident(task_id, "task_id")
        await self._enter()
        return self._row(task_id).snapshot()

    def _pending(self, limit: int | None = None) -> list[_TaskRow]:
        """Pending rows, oldest first (at most ``limit``): read from the sorted index."""
        ids = self._s.pending.ordered()
        return [self._s.tasks[task_id] for task_id in (ids if limit is None else ids[:limit])]

    async def list_pending_tasks(
        self, avs_address: str | None = None, *, limit: int | None = None
    ) -> list[Task]:
        """Pending tasks, oldest first, optionally of one AVS and at most ``limit``."""
        avs = None if avs_address is None else v.address(avs_address, "avs_address")
        n = None if limit is None else v.limit(limit)
        await self._enter()
        if avs is None:
            return [r.task for r in self._pending(n)]
        rows = [r.task for r in self._pending() if r.task.avs_address == avs]
        return rows if n is None else rows[:n]

    async def count_tasks(self) -> dict[TaskStatus, int]:
        await self._enter()
        counts = dict.fromkeys(TaskStatus, 0)
        for row in self._s.tasks.values():
            counts[row.status] += 1
        return counts

    async def update_task_status(self, task_id: str, status: TaskStatus) -> None:
        """The operator's override; see the transition table."""
        task_id = v.ident(task_id, "task_id")
        target = v.task_status(status)
        now = await self._enter_write()
        row = self._row(task_id)
        if row.status == target:
            return
        if not override_allowed(row.status, target):
            raise InvalidTransitionError(
                f"task {task_id!r} cannot go from {row.status.value} to {target.value}"
            )
        current = row.status
        row.token = self._next_token(now)
        row.updated_at = now
        self._set_status(row, target)
        if target == R:
            row.owner = MANUAL_OWNER
            row.lease_until = v.timestamp(
                now + timedelta(seconds=self._settings.default_lease_s), "lease_until"
            )
        elif target == P:
            if current == F:
                row.attempts = 0  # the operator's requeue: a full set of attempts again
            row.owner = None
            row.lease_until = None
        else:
            row.lease_until = None
            if target == F:
                row.last_error = "set to failed by an operator"
        self._emit(now, OVERRIDE_EVENT[target], task_id, target.value, MANUAL_OWNER, row.token)

    async def delete_task(self, task_id: str) -> None:
        task_id = v.ident(task_id, "task_id")
        now = await self._enter_write()
        self._row(task_id)
        self._s.pending.discard(task_id)
        del self._s.tasks[task_id]
        self._emit(now, "task.deleted", task_id)

    async def claim_tasks(self, owner: str, *, limit: int, lease_s: float) -> list[ClaimedTask]:
        """Claim up to ``limit`` pending tasks, oldest first, each under a fresh token.

        A task whose deadline has passed is failed ("deadline exceeded") instead.
        """
        owner = v.ident(owner, "owner")
        n = v.limit(limit)
        lease = v.duration(lease_s, "lease_s")
        now = await self._enter_write()
        claimed: list[ClaimedTask] = []
        if n == 0:
            return claimed
        lease_until = v.timestamp(now + timedelta(seconds=lease), "lease_until")
        # The same bounds as the Redis scripts (see CLAIM_BATCH), so both agree on
        # what one call does when many pending tasks are past their deadline.
        # Every row looked at below leaves the pending index (claimed or failed), so the
        # next one to look at is always the index's first.
        index, tasks = self._s.pending, self._s.tasks
        while len(claimed) < n:
            want, got, looked_at = min(n - len(claimed), CLAIM_BATCH), 0, 0
            while got < want and looked_at < CLAIM_LOOK_AT:
                first = index.first()
                if first is None:
                    break
                row = tasks[first]
                looked_at += 1
                if row.task.deadline is not None and row.task.deadline <= now:
                    self._set_status(row, F)
                    row.last_error = DEADLINE_EXCEEDED
                    row.updated_at = now
                    self._emit(now, "task.failed", row.task.task_id, F.value)
                    continue
                self._set_status(row, R)
                row.attempts += 1
                row.owner = owner
                row.token = self._next_token(now)
                row.lease_until = lease_until
                row.updated_at = now
                self._emit(now, "task.claimed", row.task.task_id, R.value, owner, row.token)
                claimed.append(
                    ClaimedTask(task=row.task, token=row.token, lease_until=lease_until, attempt=row.attempts)
                )
                got += 1
            if got < want:
                break
        return claimed

    async def renew_task_lease(self, task_id: str, token: int, *, lease_s: float) -> None:
        """Extend the lease of a task you hold (even if it expired but was not reaped)."""
        task_id = v.ident(task_id, "task_id")
        lease = v.duration(lease_s, "lease_s")
        token = v.token(token)
        now = await self._enter_write()
        row = self._held_row(task_id, token, TaskOp.RENEW)
        row.lease_until = v.timestamp(now + timedelta(seconds=lease), "lease_until")
        row.updated_at = now

    async def complete_task(self, task_id: str, token: int) -> None:
        """Complete a task you hold; repeating it with the same token is a no-op."""
        task_id = v.ident(task_id, "task_id")
        token = v.token(token)
        now = await self._enter_write()
        row = self._row(task_id)
        if row.status == C and row.token == token:
            return
        row = self._held_row(task_id, token, TaskOp.COMPLETE)
        row.status = C
        row.lease_until = None
        row.updated_at = now
        self._emit(now, "task.completed", row.task.task_id, C.value, row.owner, row.token)

    async def fail_task(self, task_id: str, token: int, reason: str, *, retry: bool = False) -> None:
        """Fail a task you hold; with ``retry`` it goes back to pending while attempts remain."""
        task_id = v.ident(task_id, "task_id")
        reason = v.string(reason, "reason")
        retry = v.boolean(retry, "retry")
        token = v.token(token)
        now = await self._enter_write()
        row = self._row(task_id)
        if not retry and row.status == F and row.token == token:
            return
        row = self._held_row(task_id, token, TaskOp.RETRY if retry else TaskOp.FAIL)
        row.last_error = reason
        if retry and row.attempts < self._settings.max_attempts:
            self._to_pending(row, now)
            self._emit(now, "task.retried", row.task.task_id, P.value, None, row.token)
            return
        if retry:
            row.last_error = retry_exhausted_error(reason, row.attempts, self._settings.max_attempts)
        row.status = F
        row.lease_until = None
        row.updated_at = now
        self._emit(now, "task.failed", row.task.task_id, F.value, row.owner, row.token)

    async def release_task(self, task_id: str, token: int) -> None:
        """Give a task you hold back to pending (it gets a new token)."""
        task_id = v.ident(task_id, "task_id")
        token = v.token(token)
        now = await self._enter_write()
        row = self._held_row(task_id, token, TaskOp.RELEASE)
        self._to_pending(row, now)
        self._emit(now, "task.released", row.task.task_id, P.value, None, row.token)

    async def reap_expired_leases(self) -> int:
        """Expired leases go back to pending, or to failed after max_attempts.

        Then trims completed and failed tasks past their retention, oldest
        first, until none is left, at most 100,000 per call.

        Returns:
            how many leases were reaped.
        """
        now = await self._enter_write()
        reaped = 0
        expired = sorted(
            (
                r
                for r in self._s.tasks.values()
                if r.status == R and r.lease_until is not None and r.lease_until <= now
            ),
            key=lambda r: (r.lease_until, r.task.task_id),
        )
        for row in expired:
            if row.attempts < self._settings.max_attempts:
                self._to_pending(row, now)
            else:
                row.status = F
                row.last_error = reap_error(row.attempts, self._settings.max_attempts)
                row.lease_until = None
                row.token = self._next_token(now)
                row.updated_at = now
            reaped += 1
            self._emit(now, "task.reaped", row.task.task_id, row.status.value, None, row.token)
        self._trim(now, REAP_TRIM_LIMIT)
        return reaped

    def _trim(self, now: datetime, limit: int) -> int:
        horizon = now - timedelta(seconds=self._settings.retention_s)
        old = sorted(
            (
                r
                for r in self._s.tasks.values()
                if r.status in FINAL_TASK_STATUSES and r.updated_at <= horizon
            ),
            key=lambda r: (r.updated_at, r.task.task_id),
        )[:limit]
        for row in old:
            del self._s.tasks[row.task.task_id]
        return len(old)

    async def trim_finished_tasks(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` completed/failed tasks older than ``retention_s``, oldest first."""
        n = v.limit(limit)
        now = await self._enter_write()
        return self._trim(now, n)

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
        ids in ``keep`` and finished tasks are left alone.

        Returns:
            the ids it failed, in (block number, id) order.

        Raises:
            InvalidInputError: a bad argument (``keep``: at most 10,000 valid ids).
            StaleLeaseError: ``fence`` is not the chain's live lease token.
        """
        chain_id = v.integer(chain_id, "chain_id")
        above_block = v.integer(above_block, "above_block")
        kept = frozenset(v.ids(keep, "keep", MAX_KEEP_IDS))
        reason = v.string(reason, "reason")
        fence = None if fence is None else v.token(fence, "fence")
        now = await self._enter_write()
        self._check_fence(chain_id, fence, now)
        orphaned = sorted(
            (
                r
                for r in self._s.tasks.values()
                if r.task.chain_id == chain_id
                and r.task.block_number > above_block
                and r.status in (P, R)
                and r.task.task_id not in kept
            ),
            key=lambda r: (r.task.block_number, r.task.task_id),
        )
        for row in orphaned:
            self._set_status(row, F)
            row.token = self._next_token(now)
            row.lease_until = None
            row.last_error = reason
            row.updated_at = now
            self._emit(now, "task.failed", row.task.task_id, F.value, row.owner, row.token)
        return [row.task.task_id for row in orphaned]

    # -- periodic jobs -------------------------------------------------------------

    async def try_runner_lease(self, name: str, owner: str, *, ttl_s: float) -> bool:
        """Take (or, held by ``owner``, extend) the lease of a periodic job for ``ttl_s``.

        Returns:
            True if ``owner`` now holds it; False if another owner holds a live one.
        """
        name = v.ident(name, "name")
        owner = v.ident(owner, "owner")
        ttl = v.duration(ttl_s, "ttl_s")
        now = await self._enter_write()
        current = self._s.runners.get(name)
        if current is not None and current[1] > now and current[0] != owner:
            return False
        # Whole milliseconds, at least one, as the Redis store sends it.
        expires_at = v.timestamp(now + timedelta(milliseconds=max(1, round(ttl * 1000))), "expires_at")
        self._s.runners[name] = (owner, expires_at)
        return True

    # -- config cache --------------------------------------------------------------

    async def save_operator_set_config(
        self, avs_address: str, operator_set_id: int, config: OperatorSetTaskConfig
    ) -> None:
        key = (v.address(avs_address, "avs_address"), v.integer(operator_set_id, "operator_set_id"))
        config = v.operator_set_config(config, self._settings.max_payload_bytes)
        await self._enter_write()
        self._s.opsets[key] = config

    async def get_operator_set_config(self, avs_address: str, operator_set_id: int) -> OperatorSetTaskConfig:
        key = (v.address(avs_address, "avs_address"), v.integer(operator_set_id, "operator_set_id"))
        await self._enter()
        if key not in self._s.opsets:
            raise NotFoundError(f"no task config for operator set {key[1]} of {key[0]}")
        return self._s.opsets[key]

    async def save_avs_config(self, avs_address: str, config: AvsConfig) -> None:
        avs = v.address(avs_address, "avs_address")
        config = v.avs_config(config)
        await self._enter_write()
        self._s.avs[avs] = config

    async def get_avs_config(self, avs_address: str) -> AvsConfig:
        avs = v.address(avs_address, "avs_address")
        await self._enter()
        if avs not in self._s.avs:
            raise NotFoundError(f"no AVS config for {avs}")
        return self._s.avs[avs]

    # -- events --------------------------------------------------------------------

    async def events(
        self, *, after: str | None = None, block_s: float | None = None
    ) -> AsyncIterator[StoreEvent]:
        """Events in delivery order, after ``after`` (an event id) or from the oldest kept.

        With ``block_s=None`` it ends once everything present was delivered; with
        ``block_s=x`` it waits up to x seconds for each next event.
        """
        position = (0, -1) if after is None else parse_event_id(after)
        wait = None if block_s is None else v.duration(block_s, "block_s", allow_zero=True)
        await self._enter()
        while True:
            self._check_open()
            fresh = [e for e in self._s.events if parse_event_id(e.id) > position]
            for event in fresh:
                yield event
                position = parse_event_id(event.id)
            if fresh:
                continue
            if wait is None or wait == 0:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._s.waiters.append(fut)
            try:
                await asyncio.wait_for(fut, wait)
            except TimeoutError:
                return
            finally:
                if fut in self._s.waiters:
                    self._s.waiters.remove(fut)


class MemoryExecutorStore(_MemoryStore):
    """The executor store, in process. See :class:`ponos_redis.ExecutorStore`."""

    def __init__(
        self,
        namespace: str = "default",
        *,
        clock: Clock | None = None,
        processed_ttl_s: float = 604_800.0,
        history_maxlen: int = 1_000,
        max_payload_bytes: int = 1_048_576,
        create_namespace: bool = True,
    ) -> None:
        super().__init__(namespace, clock, create_namespace=create_namespace)
        self._settings = StoreSettings.build(
            processed_ttl_s=processed_ttl_s,
            history_maxlen=history_maxlen,
            max_payload_bytes=max_payload_bytes,
        )

    @property
    def _s(self) -> _ExecutorState:
        state = _EXECUTORS.get(self.namespace)
        if state is None:
            state = _EXECUTORS[self.namespace] = _ExecutorState()
        return state

    async def save_performer_state(self, state: PerformerState) -> None:
        state = v.performer(state)
        await self._enter_write()
        self._s.performers[state.performer_id] = state

    async def get_performer_state(self, performer_id: str) -> PerformerState:
        performer_id = v.ident(performer_id, "performer_id")
        await self._enter()
        if performer_id not in self._s.performers:
            raise NotFoundError(f"performer {performer_id!r} not found")
        return self._s.performers[performer_id]

    async def list_performer_states(self) -> list[PerformerState]:
        await self._enter()
        return [self._s.performers[k] for k in sorted(self._s.performers)]

    async def delete_performer_state(self, performer_id: str) -> None:
        performer_id = v.ident(performer_id, "performer_id")
        await self._enter_write()
        if self._s.performers.pop(performer_id, None) is None:
            raise NotFoundError(f"performer {performer_id!r} not found")

    async def save_inflight_task(self, task: InflightTask) -> None:
        task = v.inflight(task)
        await self._enter_write()
        self._s.inflight[task.task_id] = task

    async def get_inflight_task(self, task_id: str) -> InflightTask:
        task_id = v.ident(task_id, "task_id")
        await self._enter()
        if task_id not in self._s.inflight:
            raise NotFoundError(f"inflight task {task_id!r} not found")
        return self._s.inflight[task_id]

    async def list_inflight_tasks(self) -> list[InflightTask]:
        await self._enter()
        return [self._s.inflight[k] for k in sorted(self._s.inflight)]

    async def delete_inflight_task(self, task_id: str) -> None:
        task_id = v.ident(task_id, "task_id")
        await self._enter_write()
        if self._s.inflight.pop(task_id, None) is None:
            raise NotFoundError(f"inflight task {task_id!r} not found")

    def _record(self, deployment: Deployment, now: datetime) -> None:
        history = self._s.history.setdefault(deployment.deployment_id, deque())
        history.append(
            DeploymentEvent(
                deployment_id=deployment.deployment_id,
                status=deployment.status,
                at=now,
                error=deployment.error,
            )
        )
        while len(history) > self._settings.history_maxlen:
            history.popleft()
        self._s.deployments[deployment.deployment_id] = deployment

    async def save_deployment(self, deployment: Deployment) -> None:
        """Save (or replace) a deployment; its history gets an event with the saved status."""
        deployment = v.deployment(deployment)
        now = await self._enter_write()
        self._record(deployment, now)

    async def get_deployment(self, deployment_id: str) -> Deployment:
        deployment_id = v.ident(deployment_id, "deployment_id")
        await self._enter()
        if deployment_id not in self._s.deployments:
            raise NotFoundError(f"deployment {deployment_id!r} not found")
        return self._s.deployments[deployment_id]

    async def update_deployment_status(
        self, deployment_id: str, status: DeploymentStatus, *, error: str = ""
    ) -> None:
        """Move a deployment along pending -> deploying -> running | failed."""
        deployment_id = v.ident(deployment_id, "deployment_id")
        target = v.deployment_status(status)
        error = v.string(error, "error")
        now = await self._enter_write()
        current = self._s.deployments.get(deployment_id)
        if current is None:
            raise NotFoundError(f"deployment {deployment_id!r} not found")
        if current.status == target:
            return
        if not deployment_transition_allowed(current.status, target):
            raise InvalidTransitionError(
                f"deployment {deployment_id!r} cannot go from {current.status.value} to {target.value}"
            )
        final = target in (DeploymentStatus.RUNNING, DeploymentStatus.FAILED)
        updated = Deployment(
            deployment_id=current.deployment_id,
            avs_address=current.avs_address,
            artifact_registry=current.artifact_registry,
            artifact_digest=current.artifact_digest,
            status=target,
            started_at=current.started_at,
            completed_at=now if final else current.completed_at,
            error=error or current.error,
        )
        self._record(updated, now)

    async def list_deployment_history(self, deployment_id: str) -> list[DeploymentEvent]:
        deployment_id = v.ident(deployment_id, "deployment_id")
        await self._enter()
        if deployment_id not in self._s.history:
            raise NotFoundError(f"deployment {deployment_id!r} not found")
        return list(self._s.history[deployment_id])

    async def mark_task_processed(self, task_id: str) -> bool:
        """Atomically mark a task processed: True the first time, False afterwards."""
        task_id = v.ident(task_id, "task_id")
        now = await self._enter_write()
        self._sweep_processed(now)
        expires = self._s.processed.get(task_id)
        if expires is not None and expires > now:
            return False
        expires = now + timedelta(seconds=self._settings.processed_ttl_s)
        self._s.processed[task_id] = expires
        heapq.heappush(self._s.processed_expiry, (expires, task_id))
        return True

    def _sweep_processed(self, now: datetime) -> None:
        """Drop up to a few expired markers, as Redis expires its keys: each mark
        adds one heap entry and removes up to two, so the storage stays bounded
        by the live markers while the work per call stays constant."""
        heap = self._s.processed_expiry
        for _ in range(_SWEEP_PER_MARK):
            if not heap or heap[0][0] > now:
                return
            expires, task_id = heapq.heappop(heap)
            if self._s.processed.get(task_id) == expires:
                del self._s.processed[task_id]

    async def is_task_processed(self, task_id: str) -> bool:
        task_id = v.ident(task_id, "task_id")
        now = await self._enter()
        expires = self._s.processed.get(task_id)
        return expires is not None and expires > now
