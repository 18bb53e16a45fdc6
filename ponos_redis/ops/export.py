"""Export a namespace to a file, and import such a file into a namespace.

:func:`export_namespace` writes every record of a namespace as JSON lines (the
format: :mod:`ponos_redis.ops._format`); :func:`import_namespace` reads a whole
file, validates it, then writes its records into a namespace of either backend.

What is exported: tasks with their status, attempts, owner, lease, token, last
error and place in the queue; chain cursors, chain leases and block records;
the config cache; performers, inflight tasks, deployments with their history;
processed markers with their expiry; the ``fence`` and ``seq`` counters. What
is not: the event stream (a history of changes, not state), claim records
(they only let a claim retried after a lost reply return what it got, for one
lease length), runner leases (they lapse within seconds), and records that
cannot be read (set aside by a claim or the reaper: ``ponos-redis doctor``
lists them; the export names them and counts them in its end line).

Processing tasks keep their owner, lease and token: the holder's lease runs
on, and the reaper returns the task to pending once it has expired, as it
would have in the source namespace. The counters are restored to at least
their exported values (and every token and sequence number in the file), so
tokens handed out after an import are above every imported one, and pending
tasks are claimed in the order they had.

Import writes a record only where the namespace has none under its id; one
that is there and the same is skipped, so importing a file twice changes
nothing; one that is there and differs refuses the import. Every record is
checked before the first is written (by the same scripts, in check mode), so
an import refused for a conflict writes nothing. (A writer racing with the
import can still make a later batch refuse after earlier ones were written;
repeating the import is then safe.)

Consistency of an export taken while replicas run: **per record**. Each record
is read in one command, so it is exported as it was at one instant, and every
record that exists for the whole export is in it; but two records may come
from different instants within the export's duration (a task claimed while the
export runs may be exported as pending, and another completed later as
completed). The counters are read last. For one point in time, stop the
writers, or use the server's RDB snapshot that :func:`~ponos_redis.ops.backup.backup_namespace`
takes with ``BGSAVE`` (the whole server at one instant). On the in-process
fake an export is one point in time.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from .._validate import timestamp
from ..errors import InvalidInputError
from ..keys import SCHEMA_VERSION
from ._format import FORMAT, FORMAT_VERSION, Export, ExportWriter, Header, read_export
from ._target import StoreOrConfig, open_namespace

__all__ = ["ExportReport", "ImportReport", "Progress", "export_namespace", "import_namespace", "read_file"]

Progress = Callable[[str, int, int | None], None]
"""A progress callback: ``progress(phase, done, total)`` (``total`` is None while unknown)."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote.

    Attributes:
        namespace: the namespace exported.
        file: where it went.
        counts: records by type (``task``, ``chain``, ... ``counters``).
        skipped: keys of records that could not be read (set aside), with why.
        sha256: the checksum in the file's end line.
        consistency: ``per-record`` (Redis) or ``point-in-time`` (the fake).
        seconds: how long it took.
    """

    namespace: str
    file: str
    counts: dict[str, int]
    skipped: list[str]
    sha256: str
    consistency: str
    seconds: float

    @property
    def records(self) -> int:
        """Records written (the counters line excluded)."""
        return sum(n for kind, n in self.counts.items() if kind != "counters")


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, with ``dry_run``, would do).

    Attributes:
        namespace: the namespace imported into.
        file: the file read.
        counts: the file's records by type.
        written: records written (would be, in a dry run).
        identical: records already there, the same (skipped).
        dry_run: nothing was written.
        seconds: how long it took.
    """

    namespace: str
    file: str
    counts: dict[str, int] = field(default_factory=dict)
    written: int = 0
    identical: int = 0
    dry_run: bool = False
    seconds: float = 0.0


@contextlib.contextmanager
def _binary(file: str | Path | IO[bytes], mode: str) -> Iterator[tuple[IO[bytes], str]]:
    if isinstance(file, str | Path):
        if str(file) == "-":
            yield (
                (sys.stdout.buffer if mode == "wb" else sys.stdin.buffer),
                "<stdin>" if mode == "rb" else "-",
            )
            return
        with open(file, mode) as opened:
            yield opened, str(file)
        return
    yield file, getattr(file, "name", "export") if isinstance(getattr(file, "name", None), str) else "export"


async def export_namespace(
    store_or_config: StoreOrConfig,
    file: str | Path | IO[bytes],
    *,
    namespace: str | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write every record of a namespace to ``file`` (JSON lines with a header and a checksum).

    Args:
        store_or_config: an open store of either backend (left open), or what
            :func:`~ponos_redis.open_aggregator_store` takes (a config, a mapping,
            ``"memory"`` or a Redis URL), opened for the export and closed after.
            A config does not create a missing namespace, and may name one of an
            older schema version (export before migrating).
        file: a path (``"-"``: standard output) or a binary file object.
        namespace: overrides the config's namespace.
        progress: called as ``progress(phase, done, total)`` while it works.

    Returns:
        what was written, with the checksum.

    Raises:
        NamespaceLostError: the namespace does not exist (Redis).
        SchemaVersionError: the namespace is of a newer schema version.
    """
    started = time.perf_counter()
    async with open_namespace(store_or_config, namespace, "read") as target:
        schema = (await target.schema())[0] if hasattr(target, "schema") else SCHEMA_VERSION
        with _binary(file, "wb") as (out, name):
            writer = ExportWriter(out)
            writer.header(
                Header(
                    format=FORMAT,
                    format_version=FORMAT_VERSION,
                    namespace=target.namespace,
                    schema_version=schema,
                    exported_at=timestamp(datetime.now(UTC), "now"),
                    source=target.kind,
                    consistency=target.consistency,
                    library=_library_version(),
                )
            )
            async for line in target.read(progress):
                writer.record(line)
            writer.record(await target.counters())
            digest = writer.finish(skipped=len(target.skipped))
            out.flush()
    return ExportReport(
        namespace=target.namespace,
        file=name,
        counts=dict(writer.counts),
        skipped=list(target.skipped),
        sha256=digest,
        consistency=target.consistency,
        seconds=time.perf_counter() - started,
    )


def read_file(file: str | Path | IO[bytes]) -> Export:
    """Read and validate a whole export file (no I/O but the file's).

    Raises:
        InvalidInputError: the file is malformed; the message names the line.
    """
    try:
        with _binary(file, "rb") as (source, name):
            return read_export(source, name)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {file}: {exc.strerror or exc}") from None


async def import_namespace(
    store_or_config: StoreOrConfig,
    file: str | Path | IO[bytes] | Export,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Write the records of an export file into a namespace.

    The whole file is read and validated first: a malformed file raises
    before anything is written, naming the line. Then every record is checked
    against the namespace (a different record under the same id refuses the
    import, writing nothing); then the records are written, in bounded batches.
    A record already there, the same, is skipped: importing twice changes
    nothing. The counters are raised to at least the file's (tokens only grow,
    the queue keeps its order).

    Args:
        store_or_config: an open store of either backend (left open), or a
            config, mapping, ``"memory"`` or Redis URL (opened as
            :func:`~ponos_redis.open_aggregator_store` would, then closed).
        file: a path (``"-"``: standard input), a binary file object, or an
            :class:`~ponos_redis.ops._format.Export` already read by :func:`read_file`.
        namespace: overrides the config's namespace (the file's own does not matter).
        dry_run: check everything, write nothing.
        progress: called as ``progress(phase, done, total)`` while it works.

    Returns:
        how many records were written and how many were already there.

    Raises:
        InvalidInputError: the file is malformed (nothing was written).
        AlreadyExistsError: a record in the namespace differs from the file's.
        SchemaVersionError: the namespace is of another schema version.
    """
    started = time.perf_counter()
    export = file if isinstance(file, Export) else read_file(file)
    name = str(file) if isinstance(file, str | Path) else "export"
    async with open_namespace(store_or_config, namespace, "write") as target:
        written, identical = await target.apply(export, dry_run=dry_run, progress=progress)
    return ImportReport(
        namespace=target.namespace,
        file=name,
        counts=export.counts(),
        written=written,
        identical=identical,
        dry_run=dry_run,
        seconds=time.perf_counter() - started,
    )


def _library_version() -> str:
    from .. import __version__

    return __version__
