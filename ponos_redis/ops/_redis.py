"""The Redis side of export, import, backup and migration.

This module and :mod:`._memory` are the only parts of :mod:`ponos_redis.ops`
that know a backend. Here every write goes through the store's own script
runner (``_script``: the namespace guard, the retry policy, ``WAIT`` under
``durability: replicated``) and every read through its retrying ``_io``, so
these operations are as safe to repeat as the store's own.

Reading a namespace: one ``SCAN`` of its keys (on a cluster, on the node that
holds its slot), then the records by kind in pipelines of 1,000. ``SCAN``
returns every key that exists from its start to its end, so a record that
exists during the whole export is in it; each record is read in one command,
so it is exported as it was at one instant. Records changed while the export
runs may be exported from before or after the change, and the counters are
read last, so they are at least every token and sequence number exported.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from redis import exceptions as rexc

from .. import _codec as codec
from .. import _validate as v
from .._ops import as_text, check, schema_message
from ..errors import (
    AlreadyExistsError,
    CorruptRecordError,
    NamespaceLostError,
    PonosStorageError,
    SchemaVersionError,
)
from ..keys import SCHEMA_VERSION, parse_key
from ..models import (
    AvsConfig,
    ChainLease,
    Consensus,
    CurveType,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    Task,
    TaskStatus,
)
from ._format import (
    MAX_HISTORY,
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
)

if TYPE_CHECKING:
    from ..backends.redis import _RedisStore
    from .migrate import Migration

__all__ = ["RedisNamespace", "Snapshot"]

Progress = Callable[[str, int, int | None], None]

_SCAN_COUNT = 1000
_READ_BATCH = 1000
_WRITE_BATCH = 500  # lua/import_tasks.lua and lua/import_records.lua refuse more
_WRITE_BYTES = 8 * 1024 * 1024
_IN_FLIGHT = 2  # import script calls at once
# Keys whose records an export holds (the others are indexes, counters, the event
# stream, claim records and runner leases, or are read with their record).
_RECORD_KINDS = frozenset(
    {
        "task",
        "chain",
        "chain-blocks",
        "opset",
        "avs-config",
        "performer",
        "inflight",
        "deployment",
        "processed",
    }
)
# The fields import_tasks writes, after the task's own: its state, then 'absent'.
_STATE_FIELDS = (
    "status",
    "seq",
    "attempts",
    "created_at",
    "updated_at",
    "owner",
    "token",
    "lease_until",
    "last_error",
)
# The task's own fields, but the payload (bytes: sent as its own argument).
_TASK_TEXT_FIELDS = tuple(name for name in codec.TASK_FIELDS if name != "payload")
TASK_IMPORT_FIELDS = (*_TASK_TEXT_FIELDS, *_STATE_FIELDS, "absent")


@dataclass(frozen=True)
class Snapshot:
    """What became of the server snapshot part of a backup."""

    file: str | None
    reason: str
    sha256: str = ""
    bytes: int = 0


class _OpsetBody(msgspec.Struct, frozen=True, kw_only=True):
    task_sla_s: float
    curve_type: CurveType
    task_metadata: bytes


class _HistoryBody(msgspec.Struct, frozen=True, kw_only=True):
    status: DeploymentStatus
    at: datetime
    error: str = ""


def _ms(value: datetime) -> str:
    return str(v.to_ms(value))


class RedisNamespace:
    """One namespace on Redis, through an open store of either kind."""

    kind = "redis"
    consistency = "per-record"

    def __init__(self, store: _RedisStore) -> None:
        self.store = store
        self.keys = store.keys
        self.namespace = store.namespace
        self.skipped: list[str] = []

    # -- plumbing ------------------------------------------------------------------

    async def _node(self) -> Any:
        """On a cluster, the node that holds the namespace's slot; else None."""
        if not self.store._cluster:
            return None
        r = self.store._r
        await r.initialize()
        return r.get_node_from_key(self.keys.meta)

    async def _call(self, what: str, call: Callable[[], Any]) -> Any:
        return await self.store._io(what, call)

    async def _pipeline(self, what: str, build: Callable[[Any], object]) -> list[Any]:
        async def call() -> list[Any]:
            pipe = self.store._r.pipeline(transaction=False)
            build(pipe)
            return list(await pipe.execute())

        result: list[Any] = await self._call(what, call)
        return result

    async def scan(self, progress: Progress | None = None, *, stop_at_record: bool = False) -> list[str]:
        """Every key of the namespace, once each (``SCAN``: see the module's docstring)."""
        seen: dict[str, None] = {}
        cursor: Any = 0
        while True:
            node = await self._node()

            async def call(cursor: Any = cursor, node: Any = node) -> Any:
                if node is None:
                    return await self.store._r.scan(cursor=cursor, match=self.keys.pattern, count=_SCAN_COUNT)
                return await self.store._r.execute_command(
                    "SCAN", cursor, "MATCH", self.keys.pattern, "COUNT", _SCAN_COUNT, target_nodes=node
                )

            cursor, found = await self._call("scan", call)
            if isinstance(cursor, dict):  # a cluster client answers by node
                cursor = next(iter(cursor.values()), 0)
            for key in found:
                text = as_text(key)
                seen[text] = None
                if stop_at_record and self._is_record(text):
                    return list(seen)
            if progress is not None:
                progress("scan", len(seen), None)
            if int(cursor) == 0:
                return list(seen)

    def _is_record(self, key: str) -> bool:
        ref = parse_key(self.keys, key)
        return ref is not None and ref.kind in _RECORD_KINDS

    # -- reading -------------------------------------------------------------------

    async def task_count(self) -> int:
        """Task records on the status and set-aside indexes."""
        keys = [self.keys.tasks(s) for s in TaskStatus] + [self.keys.set_aside]
        counts = await self._pipeline("count", lambda pipe: [pipe.zcard(k) for k in keys])
        return sum(int(n) for n in counts)

    async def first_record(self) -> str | None:
        """The key of some record of the namespace, or None when it holds none."""
        for key in await self.scan(stop_at_record=True):
            if self._is_record(key):
                return key
        return None

    async def read(self, progress: Progress | None = None) -> AsyncIterator[RecordLine]:
        """Every readable record; the unreadable ones' keys go to :attr:`skipped`."""
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for key in await self.scan(progress):
            ref = parse_key(self.keys, key)
            if ref is not None and ref.kind in _RECORD_KINDS:
                by_kind.setdefault(ref.kind, []).append((key, ref.ident))
        total = sum(len(found) for found in by_kind.values())
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress("read", done, total)

        readers = (
            ("task", self._tasks),
            ("chain", self._chains),
            ("chain-blocks", self._blocks),
            ("opset", self._opsets),
            ("avs-config", self._avs_configs),
            ("performer", self._performers),
            ("inflight", self._inflights),
            ("deployment", self._deployments),
            ("processed", self._processed),
        )
        for kind, reader in readers:
            found = by_kind.get(kind, [])
            for start in range(0, len(found), _READ_BATCH):
                chunk = found[start : start + _READ_BATCH]
                for line in await reader(chunk):
                    yield line
                advance(len(chunk))

    async def _hashes(self, chunk: list[tuple[str, str]]) -> list[dict[bytes, bytes]]:
        """The fields of each record hash of ``chunk`` (at most 1,000): one script call."""
        keys = [key for key, _ in chunk]
        reply = await self.store._script("export_hashes", keys, [len(keys)])
        flats = check(reply, "export")
        return [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in flats]

    def _skip(self, key: str, problem: CorruptRecordError | ValueError) -> None:
        self.skipped.append(f"{key} ({getattr(problem, 'reason', problem)})")

    async def _tasks(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, _), fields in zip(chunk, await self._hashes(chunk), strict=True):
            if not fields:
                continue  # deleted since the scan
            try:
                record = codec.decode_task_record(key, fields)
                seq = int(fields.get(b"seq", b""))
            except (CorruptRecordError, ValueError) as exc:
                self._skip(key, exc)
                continue
            lines.append(TaskLine(seq=seq, record=record))
        return lines

    async def _chains(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, ident), fields in zip(chunk, await self._hashes(chunk), strict=True):
            if not fields:
                continue
            try:
                chain_id = int(ident)
                last = fields.get(b"last_block")
                lease = None
                if fields.get(b"lease_token") is not None:
                    lease = ChainLease(
                        chain_id=chain_id,
                        owner=codec.text(fields.get(b"lease_owner", b""), key, "lease_owner"),
                        token=int(fields[b"lease_token"]),
                        expires_at=v.from_ms(int(fields.get(b"lease_expires_at", b""))),
                    )
                line = ChainLine(
                    chain_id=chain_id, last_block=None if last is None else int(last), lease=lease
                )
            except (CorruptRecordError, ValueError) as exc:
                self._skip(key, exc)
                continue
            if line.last_block is not None or line.lease is not None:
                lines.append(line)
        return lines

    async def _blocks(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, ident), fields in zip(chunk, await self._hashes(chunk), strict=True):
            for number, raw in sorted(fields.items(), key=lambda item: int(item[0])):
                try:
                    record = codec.decode_block(key, int(ident), int(number), raw)
                except (CorruptRecordError, ValueError) as exc:
                    self._skip(f"{key} {as_text(number)}", exc)
                    continue
                lines.append(BlockLine(record=record))
        return lines

    async def _opsets(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, ident), fields in zip(chunk, await self._hashes(chunk), strict=True):
            if not fields:
                continue
            address, _, set_id = ident.partition(":")
            try:
                consensus = codec.decode_record(
                    Consensus,
                    key,
                    {
                        b"type": fields.get(b"consensus_type"),
                        b"threshold": fields.get(b"consensus_threshold"),
                    },
                )
                body = codec.decode_record(_OpsetBody, key, fields)
            except CorruptRecordError as exc:
                self._skip(key, exc)
                continue
            config = OperatorSetTaskConfig(
                task_sla_s=body.task_sla_s,
                curve_type=body.curve_type,
                task_metadata=body.task_metadata,
                consensus=consensus,
            )
            lines.append(
                OperatorSetConfigLine(avs_address=address, operator_set_id=int(set_id), config=config)
            )
        return lines

    async def _avs_configs(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, ident), fields in zip(chunk, await self._hashes(chunk), strict=True):
            if not fields:
                continue
            try:
                lines.append(
                    AvsConfigLine(avs_address=ident, config=codec.decode_record(AvsConfig, key, fields))
                )
            except CorruptRecordError as exc:
                self._skip(key, exc)
        return lines

    async def _performers(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, _), fields in zip(chunk, await self._hashes(chunk), strict=True):
            if not fields:
                continue
            try:
                lines.append(PerformerLine(record=codec.decode_record(PerformerState, key, fields)))
            except CorruptRecordError as exc:
                self._skip(key, exc)
        return lines

    async def _inflights(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        lines: list[RecordLine] = []
        for (key, _), fields in zip(chunk, await self._hashes(chunk), strict=True):
            if not fields:
                continue
            try:
                lines.append(InflightLine(record=codec.decode_record(InflightTask, key, fields)))
            except CorruptRecordError as exc:
                self._skip(key, exc)
        return lines

    async def _deployments(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        hashes = await self._hashes(chunk)
        history_keys = [self.keys.deployment_history(ident) for _, ident in chunk]
        # The newest MAX_HISTORY entries (all of them under the default history_maxlen, 1,000).
        newest_first = await self._pipeline(
            "read records", lambda pipe: [pipe.xrevrange(k, count=MAX_HISTORY) for k in history_keys]
        )
        histories = [list(reversed(entries)) for entries in newest_first]
        lines: list[RecordLine] = []
        for (key, ident), fields, entries, hkey in zip(chunk, hashes, histories, history_keys, strict=True):
            if not fields:
                continue
            try:
                record = codec.decode_record(Deployment, key, fields)
                history = []
                for _, raw in entries:
                    body = codec.decode_record(_HistoryBody, hkey, raw)
                    history.append(
                        DeploymentEvent(deployment_id=ident, status=body.status, at=body.at, error=body.error)
                    )
            except CorruptRecordError as exc:
                self._skip(key, exc)
                continue
            lines.append(DeploymentLine(record=record, history=history))
        return lines

    async def _processed(self, chunk: list[tuple[str, str]]) -> list[RecordLine]:
        def build(pipe: Any) -> None:
            for key, _ in chunk:
                pipe.get(key)
                pipe.pttl(key)

        replies = await self._pipeline("read records", build)
        lines: list[RecordLine] = []
        for (key, ident), value, ttl in zip(chunk, replies[::2], replies[1::2], strict=True):
            if value is None:
                continue  # expired since the scan
            expires, sep, _ = as_text(value).partition(":")
            if not sep or not expires.isdigit():
                self._skip(key, ValueError(f"marker {as_text(value)!r}"))
                continue
            lines.append(
                ProcessedLine(task_id=ident, expires_at=v.from_ms(int(expires)), ttl_ms=max(0, int(ttl)))
            )
        return lines

    async def counters(self) -> CountersLine:
        """The fence and seq counters (read after the records: at least every exported value)."""
        fence, seq = await self._call(
            "read counters", lambda: self.store._r.mget(self.keys.fence, self.keys.seq)
        )
        return CountersLine(fence=int(fence or 0), seq=int(seq or 0))

    # -- writing -------------------------------------------------------------------

    async def apply(
        self, export: Export, *, dry_run: bool = False, progress: Progress | None = None
    ) -> tuple[int, int]:
        """Import the file's records: every one is checked before the first is written.

        Only the batches holding a record that is already in the namespace are run
        through the scripts' guards first (a record that is not there cannot
        conflict); then every batch is written, each script checking again.

        Returns:
            (records written, or that would be with ``dry_run``; records already
            there, identical).

        Raises:
            AlreadyExistsError: a record differs from the one stored under its id.
        """
        k = self.keys
        tasks = [r for r in export.records if isinstance(r, TaskLine)]
        others = [r for r in export.records if not isinstance(r, TaskLine)]
        task_args = [_task_args(t) for t in tasks]
        task_keys = [
            (
                k.task(t.record.task.task_id),
                k.avs_pending(t.record.task.avs_address),
                k.chain_tasks(t.record.task.chain_id),
            )
            for t in tasks
        ]
        record_args = [self._record_args(r) for r in others]
        task_batches = _batches(task_args) or [(0, 0)]  # one call even without tasks: the counters
        record_batches = _batches(
            [values for _, values in record_args],
            [len(r.history) if isinstance(r, DeploymentLine) else 0 for r in others],
        )
        total = len(export.records)
        # Only the batches holding a record already in the namespace can conflict.
        present_tasks = await self._tasks_present(task_keys, task_batches)
        present_others = await self._present(
            [(as_text(values[0]), keys[0], as_text(values[1])) for keys, values in record_args]
        )
        import_id = uuid.uuid4().hex
        calls: list[Callable[[bool], Awaitable[tuple[int, int]]]] = []
        sizes: list[int] = []
        needs_check: list[bool] = []
        for n, (first, last) in enumerate(task_batches):

            async def tasks_call(check_only: bool, first: int = first, last: int = last) -> tuple[int, int]:
                return await self._import_tasks(
                    task_keys[first:last], task_args[first:last], export, check_only, import_id
                )

            calls.append(tasks_call)
            sizes.append(last - first)
            needs_check.append(present_tasks[n])
        for first, last in record_batches:

            async def records_call(check_only: bool, first: int = first, last: int = last) -> tuple[int, int]:
                return await self._import_records(
                    others[first:last], record_args[first:last], export, check_only
                )

            calls.append(records_call)
            sizes.append(last - first)
            needs_check.append(any(present_others[first:last]))

        async def run(check_only: bool, phase: str) -> tuple[int, int]:
            totals = [0, 0, 0]  # written, identical, records done
            slots = asyncio.Semaphore(_IN_FLIGHT)

            async def one(call: Callable[[bool], Awaitable[tuple[int, int]]], size: int, check: bool) -> None:
                if check_only and not check:
                    written, same = size, 0  # none of its records is there: none can conflict
                else:
                    async with slots:
                        written, same = await call(check_only)
                totals[0] += written
                totals[1] += same
                totals[2] += size
                if progress is not None:
                    progress(phase, totals[2], total)

            # A few calls in flight at once: the client prepares one while Redis runs another.
            jobs = [
                asyncio.ensure_future(one(c, n, chk))
                for c, n, chk in zip(calls, sizes, needs_check, strict=True)
            ]
            try:
                await asyncio.gather(*jobs)
            finally:
                for job in jobs:
                    job.cancel()
            return totals[0], totals[1]

        checked = await run(True, "check")
        if dry_run:
            return checked
        return await run(False, "import")

    async def _tasks_present(
        self, task_keys: list[tuple[str, str, str]], batches: list[tuple[int, int]]
    ) -> list[bool]:
        """For each batch, whether any of its tasks is in the namespace (one EXISTS a batch:
        its keys share the namespace's hash tag, so one command takes them all)."""
        keys = [[k[0] for k in task_keys[first:last]] for first, last in batches]
        asked = [batch for batch in keys if batch]
        counts: list[Any] = []
        for start in range(0, len(asked), 100):
            part = asked[start : start + 100]

            def build(pipe: Any, part: list[list[str]] = part) -> None:
                for batch in part:
                    pipe.exists(*batch)

            counts.extend(await self._pipeline("import", build))
        answers = iter(counts)
        return [bool(batch) and int(next(answers)) > 0 for batch in keys]

    async def _present(self, records: list[tuple[str, str, str]]) -> list[bool]:
        """Whether each record (kind, key, member) is in the namespace, in pipelines of 1,000."""
        found: list[bool] = []
        for start in range(0, len(records), _READ_BATCH):
            chunk = records[start : start + _READ_BATCH]

            def build(pipe: Any, chunk: list[tuple[str, str, str]] = chunk) -> None:
                for kind, key, member in chunk:
                    if kind == "block":
                        pipe.hexists(key, member)
                    else:
                        pipe.exists(key)

            found.extend(bool(int(x)) for x in await self._pipeline("import", build))
        return found

    async def _import_tasks(
        self,
        task_keys: list[tuple[str, str, str]],
        task_args: list[tuple[bytes, bytes]],
        export: Export,
        check_only: bool,
        import_id: str,
    ) -> tuple[int, int]:
        k = self.keys
        keys = [k.seq, k.fence, *(k.tasks(s) for s in (TaskStatus.PENDING, TaskStatus.PROCESSING))]
        keys.extend(k.tasks(s) for s in (TaskStatus.COMPLETED, TaskStatus.FAILED))
        args: list[Any] = [
            "1" if check_only else "0",
            import_id,
            str(export.counters.seq),
            str(export.counters.fence),
            len(TASK_IMPORT_FIELDS),
            *TASK_IMPORT_FIELDS,
        ]
        for task_key, packed in zip(task_keys, task_args, strict=True):
            keys.extend(task_key)
            args.extend(packed)
        reply = await self.store._script("import_tasks", keys, args)
        code = as_text(reply[0])
        if code == "CONFLICT":
            ident, name = as_text(reply[1]), as_text(reply[2])
            raise AlreadyExistsError(_conflict(export, "task", ident, f"its field {name!r} differs"))
        if code in ("INVALID", "TOOMANY"):
            raise PonosStorageError(f"import_tasks answered {code} {[as_text(x) for x in reply[1:]]}")
        w, same = check(reply, "import")
        return int(w), int(same)

    def _record_args(self, line: RecordLine) -> tuple[list[str], list[bytes | str]]:
        """KEYS (three per record) and the ARGV run of one record for import_records."""
        k = self.keys
        if isinstance(line, ChainLine):
            key = k.chain(line.chain_id)
            fields: dict[str, bytes | str] = {}
            if line.last_block is not None:
                fields["last_block"] = str(line.last_block)
            if line.lease is not None:
                fields["lease_owner"] = line.lease.owner
                fields["lease_token"] = str(line.lease.token)
                fields["lease_expires_at"] = _ms(line.lease.expires_at)
            return [key, key, key], _run("hash", str(line.chain_id), _flat(fields))
        if isinstance(line, BlockLine):
            r = line.record
            blocks, index = k.blocks(r.chain_id), k.block_index(r.chain_id)
            return [blocks, index, blocks], _run("block", str(r.number), [codec.encode_block(r)])
        if isinstance(line, OperatorSetConfigLine):
            key = k.operator_set_config(line.avs_address, line.operator_set_id)
            fields = codec.encode_record(line.config, exclude=frozenset({"consensus"}))
            fields["consensus_type"] = str(line.config.consensus.type.value)
            fields["consensus_threshold"] = str(line.config.consensus.threshold)
            return [key, key, key], _run("hash", f"{line.avs_address}:{line.operator_set_id}", _flat(fields))
        if isinstance(line, AvsConfigLine):
            key = k.avs_config(line.avs_address)
            return [key, key, key], _run("hash", line.avs_address, _flat(codec.encode_record(line.config)))
        if isinstance(line, PerformerLine):
            key = k.performer(line.record.performer_id)
            values = _flat(codec.encode_record(line.record))
            return [key, k.performers, key], _run("indexed", line.record.performer_id, values)
        if isinstance(line, InflightLine):
            key = k.inflight(line.record.task_id)
            values = _flat(codec.encode_record(line.record))
            return [key, k.inflight_index, key], _run("indexed", line.record.task_id, values)
        if isinstance(line, DeploymentLine):
            d = line.record
            key = k.deployment(d.deployment_id)
            fields = codec.encode_record(d)
            run: list[bytes | str] = [str(len(fields)), *_flat(fields)]
            for event in line.history:
                run.extend((event.status.value, _ms(event.at), event.error))
            return [key, k.deployments, k.deployment_history(d.deployment_id)], _run(
                "deployment", d.deployment_id, run
            )
        assert isinstance(line, ProcessedLine)
        key = k.processed(line.task_id)
        return [key, key, key], _run("marker", line.task_id, [_ms(line.expires_at)])

    async def _import_records(
        self,
        records: Sequence[RecordLine],
        encoded: list[tuple[list[str], list[bytes | str]]],
        export: Export,
        check_only: bool,
    ) -> tuple[int, int]:
        keys: list[str] = []
        args: list[Any] = ["1" if check_only else "0", self.store._now()]
        for record_keys, values in encoded:
            keys.extend(record_keys)
            args.extend(values)
        reply = await self.store._script("import_records", keys, args)
        code = as_text(reply[0])
        if code == "CONFLICT":
            kind, member = as_text(reply[1]), as_text(reply[2])
            for record, (_, values) in zip(records, encoded, strict=True):
                if as_text(values[0]) == kind and as_text(values[1]) == member:
                    from ._format import record_key

                    what, ident = record_key(record)
                    raise AlreadyExistsError(_conflict(export, what, ident, "it differs"))
            raise AlreadyExistsError(f"a different {kind} {member!r} is already in the namespace")
        if code == "TOOMANY":
            raise PonosStorageError(f"import_records answered TOOMANY {as_text(reply[1])}")
        w, same = check(reply, "import")
        return int(w), int(same)

    # -- server snapshot -----------------------------------------------------------

    async def snapshot(self, dest: Path, *, timeout_s: float = 300.0) -> Snapshot:
        """``BGSAVE``, then copy the RDB file when the server's directory is readable here.

        Returns:
            the file copied into ``dest`` (``dump.rdb``) and a sentence on what was
            done, or None and why it was skipped.
        """
        node = await self._node()
        target: dict[str, Any] = {} if node is None else {"target_nodes": node}
        r = self.store._r

        async def refusal(call: Callable[[], Awaitable[Any]]) -> tuple[Any, rexc.ResponseError | None]:
            """One attempt's reply, or the server's refusal (NOPERM, a renamed command): the
            retry policy repeats what may pass, and must not turn a refusal into a failure."""
            try:
                return await call(), None
            except rexc.ResponseError as exc:
                return None, exc

        async def config(name: str) -> str:
            reply, refused = await self._call("backup", lambda: refusal(lambda: r.config_get(name, **target)))
            if refused is not None:
                raise refused
            values = list(reply.values()) if isinstance(reply, dict) else []
            return as_text(values[0]) if values else ""

        try:
            directory, dbfilename = await config("dir"), await config("dbfilename")
        except rexc.ResponseError as exc:
            return Snapshot(
                None, f"skipped: the server refuses CONFIG GET ({exc}), so its RDB file cannot be found"
            )
        if not directory or not dbfilename:
            return Snapshot(None, "skipped: the server does not say where it writes its RDB file")
        here = Path(directory)
        if not await asyncio.to_thread(_readable_dir, here):
            return Snapshot(
                None,
                f"skipped: the server's data directory {directory} is not readable from this machine "
                "(a remote server): take the RDB file on the server's host (see docs/operations.md)",
            )

        async def persistence() -> dict[str, Any]:
            info: dict[str, Any] = await self._call("backup", lambda: r.info("persistence", **target))
            return info

        before = await persistence()
        _, refused = await self._call(
            "backup", lambda: refusal(lambda: r.execute_command("BGSAVE", "SCHEDULE", **target))
        )
        if refused is not None and "in progress" not in str(refused):
            return Snapshot(
                None,
                f"skipped: BGSAVE was refused ({refused}); back up as a user that may run it "
                "(the shipped ponos-admin), or take the RDB file on the server's host",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            now = await persistence()
            finished = int(now.get("rdb_bgsave_in_progress", 1)) == 0
            if finished and (
                int(now.get("rdb_saves", 0)) > int(before.get("rdb_saves", 0))
                or int(now.get("rdb_last_save_time", 0)) > int(before.get("rdb_last_save_time", 0))
            ):
                break
            if loop.time() > deadline:
                return Snapshot(None, f"skipped: BGSAVE did not finish within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
        if as_text(now.get("rdb_last_bgsave_status", "ok")) != "ok":
            return Snapshot(None, "skipped: the server's BGSAVE failed (see its log)")
        source = here / dbfilename
        saved_at = int(now.get("rdb_last_save_time", 0))
        try:
            mtime = await asyncio.to_thread(_mtime, source)
        except OSError as exc:
            return Snapshot(None, f"skipped: {source} cannot be read here ({exc.strerror})")
        if abs(mtime - saved_at) > 5:
            return Snapshot(
                None,
                f"skipped: {source} is not the file the server just wrote (it is from "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(mtime))} UTC): a remote server?",
            )
        target_file = dest / "dump.rdb"
        await asyncio.to_thread(shutil.copyfile, source, target_file)
        digest, size = await asyncio.to_thread(_sha256, target_file)
        return Snapshot(
            "dump.rdb",
            f"BGSAVE of the server's whole data set, copied from {source}",
            sha256=digest,
            bytes=size,
        )

    # -- migration -----------------------------------------------------------------

    async def schema(self) -> tuple[int, str]:
        """The namespace's schema version and the migration under way (``""``).

        Read from the meta hash (a store passed in keeps the epoch it opened).

        Raises:
            NamespaceLostError: the namespace no longer exists.
            SchemaVersionError: it is of a newer version than this library's.
        """
        meta = self.keys.meta
        raw, migration = await self._call(
            "schema", lambda: self.store._r.hmget(meta, "schema_version", "migration")
        )
        if raw is None:
            raise NamespaceLostError(f"namespace {self.namespace!r} does not exist (no {meta})")
        try:
            version = int(raw)
        except ValueError:
            raise CorruptRecordError(meta, f"schema_version is {raw!r}") from None
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(schema_message(self.namespace, version, SCHEMA_VERSION))
        return version, "" if migration is None else as_text(migration)

    async def migrate_begin(self, migration: Migration) -> bool:
        """Move the version on and mark the migration (or find it marked); True if it started now."""
        reply = await self.store._script(
            "migrate_begin",
            [self.keys.meta],
            [str(migration.from_version), str(migration.to_version), uuid.uuid4().hex],
        )
        if as_text(reply[0]) == "BUSY":
            raise SchemaVersionError(
                f"namespace {self.namespace!r}: another migration ({as_text(reply[1])}) is under way"
            )
        epoch, _cursor, started = check(reply, f"namespace {self.namespace!r}")
        self.store._epoch = as_text(epoch)
        return bool(int(started))

    async def migrate_step(self, migration: Migration, batch: int) -> tuple[int, int, bool]:
        """One bounded step: (tasks looked at, added to an index, whether the migration is done)."""
        k = self.keys
        reply = await self.store._script(
            migration.step,
            [k.meta, *(k.tasks(s) for s in TaskStatus), k.set_aside],
            [batch, k.prefix],
        )
        if as_text(reply[0]) == "IDLE":
            return 0, 0, True  # finished meanwhile (another migrate run)
        looked_at, added, done, _cursor = check(reply, f"namespace {self.namespace!r} migration")
        return int(looked_at), int(added), bool(int(done))


def _run(kind: str, member: str, values: list[bytes | str]) -> list[bytes | str]:
    return [kind, member, str(len(values)), *values]


def _flat(fields: dict[str, bytes | str]) -> list[bytes | str]:
    flat: list[bytes | str] = []
    for name, value in fields.items():
        flat.extend((name, value))
    return flat


_PACK = msgspec.msgpack.Encoder()
# The task's text fields as codec.encode_task writes them (tests/ops/test_format.py
# checks they agree), without its per-field type inspection: the bulk of an import.
_TASK_ENCODERS: dict[str, Callable[[Task], str]] = {
    "task_id": lambda t: t.task_id,
    "avs_address": lambda t: t.avs_address,
    "operator_set_id": lambda t: str(t.operator_set_id),
    "chain_id": lambda t: str(t.chain_id),
    "block_number": lambda t: str(t.block_number),
    "block_hash": lambda t: t.block_hash,
    "callback_address": lambda t: t.callback_address,
    "deadline": lambda t: "" if t.deadline is None else _ms(t.deadline),
    "threshold_bips": lambda t: str(t.threshold_bips),
}
_TASK_TEXT = [_TASK_ENCODERS[name] for name in _TASK_TEXT_FIELDS]  # KeyError: a new Task field


def _task_args(line: TaskLine) -> tuple[bytes, bytes]:
    """A task for import_tasks: its values (but the payload) packed, and the payload."""
    r = line.record
    absent = [
        name
        for name, value in (
            ("owner", r.owner),
            ("token", r.token),
            ("lease_until", r.lease_until),
            ("last_error", r.last_error),
        )
        if value is None
    ]
    values = [encode(r.task) for encode in _TASK_TEXT]
    values.extend(
        (
            r.status.value,
            str(line.seq),
            str(r.attempts),
            _ms(r.created_at),
            _ms(r.updated_at),
            r.owner or "",
            "" if r.token is None else str(r.token),
            "" if r.lease_until is None else _ms(r.lease_until),
            r.last_error or "",
            ",".join(absent),
        )
    )
    return _PACK.encode(values), r.task.payload


def _batches(encoded: list[Any], entries: list[int] | None = None) -> list[tuple[int, int]]:
    """[first, last) ranges of at most _WRITE_BATCH items, about _WRITE_BYTES, and at
    most MAX_HISTORY history ``entries`` (deployments') a range."""
    ranges: list[tuple[int, int]] = []
    first, size, history = 0, 0, 0
    for i, values in enumerate(encoded):
        weight = sum(len(value) for value in values)
        more = 0 if entries is None else entries[i]
        if i > first and (
            i - first >= _WRITE_BATCH or size + weight > _WRITE_BYTES or history + more > MAX_HISTORY
        ):
            ranges.append((first, i))
            first, size, history = i, 0, 0
        size += weight
        history += more
    if encoded:
        ranges.append((first, len(encoded)))
    return ranges


def _conflict(export: Export, kind: str, ident: str, how: str) -> str:
    line = export.line_of(kind, ident)
    where = f" (line {line} of the file)" if line else ""
    return f"{kind} {ident!r}{where} is already in the namespace and {how}: the import was refused"


def _readable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.R_OK | os.X_OK)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
