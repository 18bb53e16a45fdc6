"""The in-process fake's side of export, import and migration.

The fake keeps a namespace's state in this process (see
:mod:`ponos_redis.backends.memory`); these functions read and write that state
directly, with the same rules as the Redis scripts: a record already there the
same is skipped, a different one refuses the whole import before any write, the
``seq`` and ``fence`` counters only grow. Each runs without awaiting between
its first read and its last write, so an export is one point in time and an
import is all or nothing, as one script call is on Redis.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .._ops import schema_message
from ..backends import memory as fake
from ..errors import AlreadyExistsError, SchemaVersionError
from ..keys import SCHEMA_VERSION
from ..models import TaskStatus
from ._format import (
    AvsConfigLine,
    BlockLine,
    ChainLine,
    CountersLine,
    DeploymentLine,
    Export,
    InflightLine,
    OperatorSetConfigLine,
    PerformerLine,
    ProcessedLine,
    RecordLine,
    TaskLine,
    record_key,
)

if TYPE_CHECKING:
    from .migrate import Migration

__all__ = ["MemoryNamespace", "MemorySchema"]

Progress = Callable[[str, int, int | None], None]


def _last_seq(state: fake._AggregatorState) -> int:
    """The last sequence number the namespace handed out (peeking at its counter)."""
    following = next(state.seq)
    state.seq = itertools.count(following)
    return following - 1


class MemoryNamespace:
    """One namespace of the in-process fake, through its two stores."""

    kind = "memory"
    consistency = "point-in-time"

    def __init__(self, aggregator: fake.MemoryAggregatorStore, executor: fake.MemoryExecutorStore) -> None:
        self.aggregator = aggregator
        self.executor = executor
        self.store = aggregator
        self.namespace = aggregator.namespace
        self.skipped: list[str] = []
        self._snapshot: tuple[list[RecordLine], CountersLine] | None = None

    # -- reading -------------------------------------------------------------------

    def _take_snapshot(self) -> tuple[list[RecordLine], CountersLine]:
        a, e = self.aggregator._s, self.executor._s
        lines: list[RecordLine] = [TaskLine(seq=row.seq, record=row.snapshot()) for row in a.tasks.values()]
        for chain_id in sorted(set(a.cursors) | set(a.leases)):
            lines.append(
                ChainLine(chain_id=chain_id, last_block=a.cursors.get(chain_id), lease=a.leases.get(chain_id))
            )
        for _, blocks in sorted(a.blocks.items()):
            lines.extend(BlockLine(record=blocks[number]) for number in sorted(blocks))
        for (avs, set_id), config in sorted(a.opsets.items()):
            lines.append(OperatorSetConfigLine(avs_address=avs, operator_set_id=set_id, config=config))
        lines.extend(AvsConfigLine(avs_address=avs, config=config) for avs, config in sorted(a.avs.items()))
        lines.extend(PerformerLine(record=e.performers[k]) for k in sorted(e.performers))
        lines.extend(InflightLine(record=e.inflight[k]) for k in sorted(e.inflight))
        for k in sorted(e.deployments):
            lines.append(DeploymentLine(record=e.deployments[k], history=list(e.history.get(k, ()))))
        now = self.executor._clock()
        for task_id, expires in sorted(e.processed.items()):
            if expires > now:
                ttl = int((expires - now).total_seconds() * 1000)
                lines.append(ProcessedLine(task_id=task_id, expires_at=expires, ttl_ms=ttl))
        return lines, CountersLine(fence=a.fence[0], seq=_last_seq(a))

    async def task_count(self) -> int:
        return len(self.aggregator._s.tasks)

    async def first_record(self) -> str | None:
        """Some record of the namespace, named, or None when it holds none."""
        for line in self._take_snapshot()[0]:
            kind, ident = record_key(line)
            return f"{kind} {ident!r}"
        return None

    async def read(self, progress: Progress | None = None) -> AsyncIterator[RecordLine]:
        """Every record, as the namespace was at one instant (read without awaiting)."""
        await self.aggregator._enter()
        self._snapshot = self._take_snapshot()
        lines = self._snapshot[0]
        for n, line in enumerate(lines, start=1):
            yield line
            if progress is not None and (n % 1000 == 0 or n == len(lines)):
                progress("read", n, len(lines))

    async def counters(self) -> CountersLine:
        """The counters of the same instant as :meth:`read` (or of now)."""
        if self._snapshot is not None:
            return self._snapshot[1]
        a = self.aggregator._s
        return CountersLine(fence=a.fence[0], seq=_last_seq(a))

    # -- writing -------------------------------------------------------------------

    async def apply(
        self, export: Export, *, dry_run: bool = False, progress: Progress | None = None
    ) -> tuple[int, int]:
        """Import the file's records, all or nothing; see :meth:`RedisNamespace.apply`."""
        now = await self.aggregator._enter_write("import")
        await self.executor._enter_write("import")
        a, e = self.aggregator._s, self.executor._s
        new: list[RecordLine] = []
        identical = 0
        for line in export.records:
            state = self._state(line, now)
            if state == "conflict":
                kind, ident = record_key(line)
                where = export.line_of(kind, ident)
                raise AlreadyExistsError(
                    f"{kind} {ident!r} (line {where} of the file) is already in the namespace "
                    "and it differs: the import was refused"
                )
            if state == "same":
                identical += 1
            else:
                new.append(line)
        if dry_run:
            return len(new), identical
        max_token, max_seq = export.counters.fence, export.counters.seq
        for line in new:
            self._write(line)
        for line in export.by_type(TaskLine):
            max_seq = max(max_seq, line.seq)
            max_token = max(max_token, line.record.token or 0)
        a.fence[0] = max(a.fence[0], max_token)
        a.seq = itertools.count(max(_last_seq(a), max_seq) + 1)
        del e  # (written through self.executor._s in _write)
        if progress is not None:
            progress("import", len(export.records), len(export.records))
        await asyncio.sleep(0)
        return len(new), identical

    def _state(self, line: RecordLine, now: object) -> str:
        """'absent', 'same' or 'conflict': the record against what the namespace holds."""
        a, e = self.aggregator._s, self.executor._s
        if isinstance(line, TaskLine):
            row = a.tasks.get(line.record.task.task_id)
            if row is None:
                return "absent"
            return "same" if (row.seq, row.snapshot()) == (line.seq, line.record) else "conflict"
        if isinstance(line, ChainLine):
            cursor, lease = a.cursors.get(line.chain_id), a.leases.get(line.chain_id)
            if cursor is None and lease is None:
                return "absent"
            return "same" if (cursor, lease) == (line.last_block, line.lease) else "conflict"
        if isinstance(line, BlockLine):
            found = a.blocks.get(line.record.chain_id, {}).get(line.record.number)
            return _compare(found, line.record)
        if isinstance(line, OperatorSetConfigLine):
            return _compare(a.opsets.get((line.avs_address, line.operator_set_id)), line.config)
        if isinstance(line, AvsConfigLine):
            return _compare(a.avs.get(line.avs_address), line.config)
        if isinstance(line, PerformerLine):
            return _compare(e.performers.get(line.record.performer_id), line.record)
        if isinstance(line, InflightLine):
            return _compare(e.inflight.get(line.record.task_id), line.record)
        if isinstance(line, DeploymentLine):
            deployment = e.deployments.get(line.record.deployment_id)
            if deployment is None:
                return "absent"
            history = list(e.history.get(line.record.deployment_id, ()))
            return "same" if (deployment, history) == (line.record, line.history) else "conflict"
        expires = e.processed.get(line.task_id)
        return "same" if expires is not None and expires > self.executor._clock() else "absent"

    def _write(self, line: RecordLine) -> None:
        a, e = self.aggregator._s, self.executor._s
        if isinstance(line, TaskLine):
            r = line.record
            row = fake._TaskRow(
                task=r.task,
                seq=line.seq,
                status=r.status,
                created_at=r.created_at,
                updated_at=r.updated_at,
                attempts=r.attempts,
                owner=r.owner,
                token=r.token,
                lease_until=r.lease_until,
                last_error=r.last_error,
            )
            a.tasks[r.task.task_id] = row
            if r.status is TaskStatus.PENDING:
                a.pending.add(row.seq, r.task.task_id)
        elif isinstance(line, ChainLine):
            if line.last_block is not None:
                a.cursors[line.chain_id] = line.last_block
            if line.lease is not None:
                a.leases[line.chain_id] = line.lease
        elif isinstance(line, BlockLine):
            a.blocks.setdefault(line.record.chain_id, {})[line.record.number] = line.record
        elif isinstance(line, OperatorSetConfigLine):
            a.opsets[(line.avs_address, line.operator_set_id)] = line.config
        elif isinstance(line, AvsConfigLine):
            a.avs[line.avs_address] = line.config
        elif isinstance(line, PerformerLine):
            e.performers[line.record.performer_id] = line.record
        elif isinstance(line, InflightLine):
            e.inflight[line.record.task_id] = line.record
        elif isinstance(line, DeploymentLine):
            e.deployments[line.record.deployment_id] = line.record
            e.history[line.record.deployment_id] = deque(line.history)
        elif line.expires_at > self.executor._clock():
            e.processed[line.task_id] = line.expires_at
            heapq.heappush(e.processed_expiry, (line.expires_at, line.task_id))

    async def snapshot(self, dest: object, *, timeout_s: float = 0.0) -> object:
        from ._redis import Snapshot

        return Snapshot(None, "skipped: the in-process fake has no server snapshot")


class MemorySchema:
    """The schema version of one namespace of the fake, for :mod:`.migrate`.

    Works without opening a store (a store refuses a namespace of another version).
    """

    kind = "memory"

    def __init__(self, namespace: str, store: fake._MemoryStore | None = None) -> None:
        self.namespace = namespace
        self._store = store  # keeps working after a migration it asked for

    async def task_count(self) -> int:
        state = fake._AGGREGATORS.get(self.namespace)
        return 0 if state is None else len(state.tasks)

    async def schema(self) -> tuple[int, str]:
        await asyncio.sleep(0)
        version = fake._SCHEMAS.get(self.namespace, SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(schema_message(self.namespace, version, SCHEMA_VERSION))
        return version, ""

    async def migrate_begin(self, migration: Migration) -> bool:
        """Move the version on (and, from version 1, the epoch, as on Redis)."""
        await asyncio.sleep(0)
        if fake._SCHEMAS.get(self.namespace, SCHEMA_VERSION) != migration.from_version:
            return False
        fake._SCHEMAS[self.namespace] = migration.to_version
        if migration.from_version == 1 and self.namespace in fake._EPOCHS:
            epoch = fake._EPOCHS[self.namespace] = uuid.uuid4().hex
            if self._store is not None:
                self._store._epoch = epoch
        return True

    async def migrate_step(self, migration: Migration, batch: int) -> tuple[int, int, bool]:
        # The fake finds a chain's tasks by looking at every task: it has no index to build.
        await asyncio.sleep(0)
        return 0, 0, True


def _compare(found: object, given: object) -> str:
    if found is None:
        return "absent"
    return "same" if found == given else "conflict"
