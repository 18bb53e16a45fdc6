"""The export file: JSON lines, written and read here (pure, no I/O beyond the file).

One JSON object per line, each with a ``type``:

1. ``header`` (the first line): the format and its version, the namespace it
   came from, its schema version, when, from which backend, how consistent.
2. the records, in any order: ``task`` (the task, its state, and its ``seq``:
   its place in the queue), ``chain`` (cursor and lease), ``block``,
   ``operator_set_config``, ``avs_config``, ``performer``, ``inflight``,
   ``deployment`` (with its history), ``processed`` (a de-dup marker and its
   expiry), and one ``counters`` line (the ``fence`` and ``seq`` counters).
3. ``end`` (the last line): how many lines came between, and the SHA-256 of
   every byte before it, so a file cut short or changed is refused.

Records hold the models of :mod:`ponos_redis.models` as msgspec encodes them
(times as RFC 3339 UTC strings with milliseconds, bytes as base64), not the
Redis fields, so a file moves between backends and schema versions.

:func:`read_export` validates a whole file before anything is written: JSON,
types, the values a store would accept, consistency of each task's lease
fields, duplicates, the line count and the checksum. Its errors are
:class:`~ponos_redis.errors.InvalidInputError` naming the line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import msgspec

from .. import _validate as v
from ..errors import InvalidInputError
from ..models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    Deployment,
    DeploymentEvent,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    TaskRecord,
    TaskStatus,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_HISTORY",
    "AvsConfigLine",
    "BlockLine",
    "ChainLine",
    "CountersLine",
    "DeploymentLine",
    "EndLine",
    "Export",
    "ExportWriter",
    "Header",
    "InflightLine",
    "OperatorSetConfigLine",
    "PerformerLine",
    "ProcessedLine",
    "RecordLine",
    "TaskLine",
    "read_export",
    "record_key",
]

FORMAT = "ponos-redis-export"
FORMAT_VERSION = 1
# A deployment's history in one file line (and one import script) is bounded.
MAX_HISTORY = 10_000
# Payloads and metadata are bounded by the largest tasks.max_payload_bytes a config accepts.
_MAX_BYTES = 512 * 1024 * 1024


class _Line(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class Header(_Line, frozen=True, kw_only=True, tag="header"):
    """The first line: what the file is and where it came from."""

    format: str
    format_version: int
    namespace: str
    schema_version: int
    exported_at: datetime
    source: str
    consistency: str
    library: str = ""


class TaskLine(_Line, frozen=True, kw_only=True, tag="task"):
    seq: int
    record: TaskRecord


class ChainLine(_Line, frozen=True, kw_only=True, tag="chain"):
    chain_id: int
    last_block: int | None = None
    lease: ChainLease | None = None


class BlockLine(_Line, frozen=True, kw_only=True, tag="block"):
    record: BlockRecord


class OperatorSetConfigLine(_Line, frozen=True, kw_only=True, tag="operator_set_config"):
    avs_address: str
    operator_set_id: int
    config: OperatorSetTaskConfig


class AvsConfigLine(_Line, frozen=True, kw_only=True, tag="avs_config"):
    avs_address: str
    config: AvsConfig


class PerformerLine(_Line, frozen=True, kw_only=True, tag="performer"):
    record: PerformerState


class InflightLine(_Line, frozen=True, kw_only=True, tag="inflight"):
    record: InflightTask


class DeploymentLine(_Line, frozen=True, kw_only=True, tag="deployment"):
    record: Deployment
    history: list[DeploymentEvent] = msgspec.field(default_factory=list)


class ProcessedLine(_Line, frozen=True, kw_only=True, tag="processed"):
    """A de-dup marker: it expires at ``expires_at`` (``ttl_ms`` was left when exported)."""

    task_id: str
    expires_at: datetime
    ttl_ms: int


class CountersLine(_Line, frozen=True, kw_only=True, tag="counters"):
    """The namespace's counters when the export ended: the last token and sequence number."""

    fence: int
    seq: int


class EndLine(_Line, frozen=True, kw_only=True, tag="end"):
    records: int
    sha256: str
    skipped: int = 0


RecordLine = (
    TaskLine
    | ChainLine
    | BlockLine
    | OperatorSetConfigLine
    | AvsConfigLine
    | PerformerLine
    | InflightLine
    | DeploymentLine
    | ProcessedLine
)
_AnyLine = Header | RecordLine | CountersLine | EndLine

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_AnyLine)


def record_key(line: RecordLine) -> tuple[str, str]:
    """The record's identity in its namespace: ``(type, id)``; two lines with one key are a duplicate."""
    if isinstance(line, TaskLine):
        return "task", line.record.task.task_id
    if isinstance(line, ChainLine):
        return "chain", str(line.chain_id)
    if isinstance(line, BlockLine):
        return "block", f"{line.record.chain_id}:{line.record.number}"
    if isinstance(line, OperatorSetConfigLine):
        return "operator_set_config", f"{line.avs_address}:{line.operator_set_id}"
    if isinstance(line, AvsConfigLine):
        return "avs_config", line.avs_address
    if isinstance(line, PerformerLine):
        return "performer", line.record.performer_id
    if isinstance(line, InflightLine):
        return "inflight", line.record.task_id
    if isinstance(line, DeploymentLine):
        return "deployment", line.record.deployment_id
    return "processed", line.task_id


class ExportWriter:
    """Writes an export: :meth:`header`, then :meth:`record` for each, then :meth:`finish`."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._sha = hashlib.sha256()
        self.lines = 0
        self.counts: dict[str, int] = {}

    def _write(self, line: _Line) -> None:
        data = _encoder.encode(line) + b"\n"
        self._sha.update(data)
        self._file.write(data)

    def header(self, header: Header) -> None:
        self._write(header)

    def record(self, line: RecordLine | CountersLine) -> None:
        self._write(line)
        self.lines += 1
        kind = "counters" if isinstance(line, CountersLine) else record_key(line)[0]
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def finish(self, *, skipped: int = 0) -> str:
        """Write the end line; return the checksum it carries."""
        digest = self._sha.hexdigest()
        self._file.write(_encoder.encode(EndLine(records=self.lines, sha256=digest, skipped=skipped)) + b"\n")
        return digest


@dataclass
class Export:
    """A validated export file: its header, records (with their line numbers) and counters."""

    header: Header
    records: list[RecordLine] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    counters: CountersLine = field(default_factory=lambda: CountersLine(fence=0, seq=0))
    sha256: str = ""
    skipped: int = 0
    _index: dict[tuple[str, str], int] | None = field(default=None, repr=False, compare=False)

    def line_of(self, kind: str, ident: str) -> int | None:
        """The line number of the record ``(kind, ident)``, if the file holds it."""
        if self._index is None:
            self._index = {record_key(r): n for r, n in zip(self.records, self.lines, strict=True)}
        return self._index.get((kind, ident))

    def counts(self) -> dict[str, int]:
        """How many records of each type the file holds."""
        counts: dict[str, int] = {}
        for record in self.records:
            kind = record_key(record)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def by_type(self, cls: type[Any]) -> Iterator[Any]:
        return (r for r in self.records if isinstance(r, cls))


def _lines(file: IO[bytes]) -> Iterable[bytes]:
    while True:
        data = file.readline()
        if not data:
            return
        yield data


def read_export(file: IO[bytes], name: str = "export") -> Export:
    """Read and validate a whole export file.

    Args:
        file: the file, opened in binary mode.
        name: how errors name the file.

    Raises:
        InvalidInputError: the file is not a complete, unchanged export of a
            format this library reads, or a record is invalid; the message names
            the line.
    """
    sha = hashlib.sha256()
    export: Export | None = None
    seen: dict[tuple[str, str], int] = {}
    counters_line = 0
    end: EndLine | None = None
    number = 0
    for number, data in enumerate(_lines(file), start=1):

        def fail(reason: str, at: int = number) -> InvalidInputError:
            return InvalidInputError(f"{name} line {at}: {reason}; nothing was written")

        if end is not None:
            raise fail("there is more after the end line")
        if not data.endswith(b"\n"):
            raise fail("the line is cut short (no newline): the file is incomplete")
        if not data.strip():
            raise fail("empty line")
        try:
            line = _decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise fail(f"not a valid record: {exc}") from None
        except msgspec.DecodeError as exc:
            raise fail(f"not JSON: {exc}") from None
        if number == 1:
            if not isinstance(line, Header) or line.format != FORMAT:
                raise fail(f"not a {FORMAT} file (its first line must be the header)")
            if line.format_version != FORMAT_VERSION:
                raise fail(
                    f"format version {line.format_version}; this library reads version {FORMAT_VERSION}"
                )
            export = Export(header=line)
            sha.update(data)
            continue
        assert export is not None
        if isinstance(line, Header):
            raise fail("a second header")
        if isinstance(line, EndLine):
            end = line
            if line.records != number - 2:
                raise fail(f"the end line counts {line.records} records, the file holds {number - 2}")
            if line.sha256 != sha.hexdigest():
                raise fail("checksum mismatch: the file was changed or damaged after it was written")
            export.sha256 = line.sha256
            export.skipped = line.skipped
            continue
        sha.update(data)
        if isinstance(line, CountersLine):
            if counters_line:
                raise fail(f"a second counters line (the first is line {counters_line})")
            try:
                export.counters = CountersLine(
                    fence=v.token(line.fence, "fence"), seq=v.integer(line.seq, "seq")
                )
            except InvalidInputError as exc:
                raise fail(str(exc)) from None
            counters_line = number
            continue
        try:
            record = _validated(line)
        except InvalidInputError as exc:
            raise fail(str(exc)) from None
        key = record_key(record)
        if key in seen:
            raise fail(f"{key[0]} {key[1]!r} again (first on line {seen[key]})")
        seen[key] = number
        export.records.append(record)
        export.lines.append(number)
    if export is None:
        raise InvalidInputError(f"{name} is empty: not a {FORMAT} file; nothing was written")
    if end is None:
        raise InvalidInputError(
            f"{name} line {number}: the file ends without its end line: it is incomplete; nothing was written"
        )
    if not counters_line:
        raise InvalidInputError(f"{name}: no counters line; nothing was written")
    return export


def _validated(line: RecordLine) -> RecordLine:
    """The record as a store would accept it (normalised), or InvalidInputError."""
    if isinstance(line, TaskLine):
        return TaskLine(seq=v.integer(line.seq, "seq"), record=_task_record(line.record))
    if isinstance(line, ChainLine):
        chain_id = v.integer(line.chain_id, "chain_id")
        lease = None
        if line.lease is not None:
            lease = v.chain_lease(line.lease)
            if lease.chain_id != chain_id:
                raise InvalidInputError(f"the lease is of chain {lease.chain_id}, not {chain_id}")
            lease = ChainLease(
                chain_id=chain_id,
                owner=lease.owner,
                token=lease.token,
                expires_at=v.timestamp(lease.expires_at, "lease.expires_at"),
            )
        last = None if line.last_block is None else v.integer(line.last_block, "last_block")
        if last is None and lease is None:
            raise InvalidInputError("a chain line needs last_block or lease")
        return ChainLine(chain_id=chain_id, last_block=last, lease=lease)
    if isinstance(line, BlockLine):
        return BlockLine(record=v.block(line.record))
    if isinstance(line, OperatorSetConfigLine):
        return OperatorSetConfigLine(
            avs_address=v.address(line.avs_address, "avs_address"),
            operator_set_id=v.integer(line.operator_set_id, "operator_set_id"),
            config=v.operator_set_config(line.config, _MAX_BYTES),
        )
    if isinstance(line, AvsConfigLine):
        return AvsConfigLine(
            avs_address=v.address(line.avs_address, "avs_address"), config=v.avs_config(line.config)
        )
    if isinstance(line, PerformerLine):
        return PerformerLine(record=v.performer(line.record))
    if isinstance(line, InflightLine):
        return InflightLine(record=v.inflight(line.record))
    if isinstance(line, DeploymentLine):
        record = v.deployment(line.record)
        if len(line.history) > MAX_HISTORY:
            raise InvalidInputError(f"a history of {len(line.history)} entries (at most {MAX_HISTORY})")
        history = []
        for event in line.history:
            if event.deployment_id != record.deployment_id:
                raise InvalidInputError(
                    f"a history entry of deployment {event.deployment_id!r} in {record.deployment_id!r}"
                )
            history.append(
                DeploymentEvent(
                    deployment_id=record.deployment_id,
                    status=v.deployment_status(event.status),
                    at=v.timestamp(event.at, "history[].at"),
                    error=v.string(event.error, "history[].error"),
                )
            )
        return DeploymentLine(record=record, history=history)
    return ProcessedLine(
        task_id=v.ident(line.task_id, "task_id"),
        expires_at=v.timestamp(line.expires_at, "expires_at"),
        ttl_ms=v.integer(line.ttl_ms, "ttl_ms"),
    )


def _task_record(record: TaskRecord) -> TaskRecord:
    task = v.task(record.task, _MAX_BYTES)
    status = v.task_status(record.status)
    owner = None if record.owner is None else v.ident(record.owner, "owner")
    token = None if record.token is None else v.token(record.token)
    lease_until = v.optional_timestamp(record.lease_until, "lease_until")
    if status is TaskStatus.PROCESSING and (lease_until is None or token is None or owner is None):
        raise InvalidInputError("a processing task needs owner, token and lease_until")
    if status is not TaskStatus.PROCESSING and lease_until is not None:
        raise InvalidInputError(f"a {status.value} task has no lease_until")
    return TaskRecord(
        task=task,
        status=status,
        attempts=v.integer(record.attempts, "attempts"),
        owner=owner,
        token=token,
        lease_until=lease_until,
        created_at=v.timestamp(record.created_at, "created_at"),
        updated_at=v.timestamp(record.updated_at, "updated_at"),
        last_error=None if record.last_error is None else v.string(record.last_error, "last_error"),
    )
