"""Moving a namespace's data: ``export``, ``import``, ``backup``, ``restore``, ``migrate``.

The logic lives in :mod:`ponos_redis.ops`; these commands parse options, show a
progress bar (rich, on stderr, when it is a terminal and ``--json`` is not
given) and print what was done, or one line of JSON with ``--json``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ..ops import (
    backup_namespace,
    export_namespace,
    import_namespace,
    migrate_namespace,
    restore_namespace,
)
from . import main
from ._common import _config, _run, console, emit_json, json_option, namespace_option, store_option

_PHASES = {
    "scan": "finding keys",
    "read": "reading records",
    "check": "checking records",
    "import": "writing records",
    "snapshot": "server snapshot (BGSAVE)",
    "migrate": "migrating tasks",
}


@contextlib.contextmanager
def _progress(as_json: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A rich progress bar on stderr, or None (``--json``, or stderr not a terminal)."""
    if as_json or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in bars:
                bars[phase] = bar.add_task(_PHASES.get(phase, phase), total=total)
            bar.update(bars[phase], completed=done, total=total)

        yield update


def _say(text: str) -> None:
    console.print(text, highlight=False)


@main.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@store_option
@namespace_option
@json_option
def export_command(file: str, store: str | None, namespace: str | None, as_json: bool) -> None:
    """Write every record of the namespace to FILE (JSON lines; '-': standard output).

    Tasks with their state and lease, chain cursors, leases and blocks, the
    config cache, executor records and processed markers, the fence and seq
    counters; a header and a checksum. Consistent per record while replicas
    run (docs/operations.md). The namespace is never created.
    """
    with _progress(as_json or file == "-") as progress:
        report = _run(export_namespace(_config(store), file, namespace=namespace, progress=progress))
    if as_json:
        emit_json(
            {
                "namespace": report.namespace,
                "file": report.file,
                "records": report.records,
                "counts": report.counts,
                "skipped": report.skipped,
                "sha256": report.sha256,
                "consistency": report.consistency,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    out = console if file != "-" else None
    lines = [
        f"exported {report.records} records of namespace {report.namespace!r} to {report.file} "
        f"in {report.seconds:.2f} s ({_counts(report.counts)})",
        f"consistency: {report.consistency}; sha256 {report.sha256}",
        *(f"skipped (cannot be read): {key}" for key in report.skipped),
    ]
    for line in lines:
        if out is None:
            click.echo(line, err=True)
        else:
            _say(line)


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@store_option
@namespace_option
@click.option("--dry-run", is_flag=True, help="check the file and the namespace, write nothing")
@json_option
def import_command(file: str, store: str | None, namespace: str | None, dry_run: bool, as_json: bool) -> None:
    """Write the records of an export FILE into the namespace ('-': standard input).

    The whole file is validated first (a malformed file writes nothing; the
    error names the line), then every record is checked against the namespace:
    a different record under the same id refuses the import. Records already
    there, the same, are skipped: importing twice changes nothing.
    """
    with _progress(as_json) as progress:
        report = _run(
            import_namespace(_config(store), file, namespace=namespace, dry_run=dry_run, progress=progress)
        )
    if as_json:
        emit_json(
            {
                "namespace": report.namespace,
                "file": report.file,
                "counts": report.counts,
                "written": report.written,
                "identical": report.identical,
                "dry_run": report.dry_run,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    verb = "would write" if dry_run else "wrote"
    _say(
        f"{verb} {report.written} records into namespace {report.namespace!r}, "
        f"{report.identical} already there ({_counts(report.counts)}) in {report.seconds:.2f} s"
    )


@main.command("backup")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="directory of the backups")
@click.option("--keep", type=click.IntRange(min=1), default=None, help="keep only the newest N backups")
@click.option("--no-server-snapshot", is_flag=True, help="do not BGSAVE and copy the server's RDB file")
@store_option
@namespace_option
@json_option
def backup_command(
    to: str,
    keep: int | None,
    no_server_snapshot: bool,
    store: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Back the namespace up into a new timestamped directory under --to.

    The export, the server's RDB file when the server's data directory is
    readable here (BGSAVE, then a copy; otherwise skipped, and said so), and a
    manifest with the checksum of each. --keep N prunes this namespace's
    backups there to the newest N.
    """
    with _progress(as_json) as progress:
        report = _run(
            backup_namespace(
                _config(store),
                to,
                namespace=namespace,
                keep=keep,
                server_snapshot=not no_server_snapshot,
                progress=progress,
            )
        )
    if as_json:
        emit_json(
            {
                "path": str(report.path),
                "namespace": report.export.namespace,
                "records": report.export.records,
                "counts": report.export.counts,
                "skipped": report.export.skipped,
                "sha256": report.export.sha256,
                "server_snapshot": report.snapshot,
                "server_snapshot_note": report.snapshot_note,
                "pruned": [str(p) for p in report.pruned],
                "seconds": round(report.seconds, 3),
            }
        )
        return
    _say(
        f"backup of namespace {report.export.namespace!r}: {report.path} "
        f"({report.export.records} records, {report.seconds:.2f} s)"
    )
    _say(f"server snapshot: {report.snapshot_note}")
    for key in report.export.skipped:
        _say(f"skipped (cannot be read): {key}")
    for path in report.pruned:
        _say(f"pruned {path}")


@main.command("restore")
@click.argument("backup", type=click.Path(exists=True, file_okay=False))
@click.option("--force", is_flag=True, help="restore into a namespace that is not empty")
@store_option
@namespace_option
@json_option
def restore_command(
    backup: str, force: bool, store: str | None, namespace: str | None, as_json: bool
) -> None:
    """Restore the backup directory BACKUP into the namespace.

    Every file is checked against the manifest's checksum first. The namespace
    must hold no record (--force: restore into it anyway; a record that differs
    from the backup's still refuses, writing nothing).
    """
    with _progress(as_json) as progress:
        report = _run(
            restore_namespace(
                _config(store), Path(backup), namespace=namespace, force=force, progress=progress
            )
        )
    imported = report.imported
    if as_json:
        emit_json(
            {
                "path": str(report.path),
                "backup_namespace": report.backup_namespace,
                "namespace": imported.namespace,
                "counts": imported.counts,
                "written": imported.written,
                "identical": imported.identical,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    _say(
        f"restored {report.path} (namespace {report.backup_namespace!r}) into namespace "
        f"{imported.namespace!r}: {imported.written} records written, {imported.identical} already there "
        f"({_counts(imported.counts)}) in {report.seconds:.2f} s"
    )


@main.command("migrate")
@click.option("--dry-run", is_flag=True, help="say what would be done, change nothing")
@store_option
@namespace_option
@json_option
def migrate_command(dry_run: bool, store: str | None, namespace: str | None, as_json: bool) -> None:
    """Move the namespace to this version's schema, in place (resumable, idempotent).

    Replicas of the older version still running stop at their next write;
    stores of this version open once it has finished. Interrupted, run it
    again: it resumes where it stopped.
    """
    with _progress(as_json or dry_run) as progress:
        report = _run(
            migrate_namespace(_config(store), namespace=namespace, dry_run=dry_run, progress=progress)
        )
    if as_json:
        emit_json(
            {
                "namespace": report.namespace,
                "from_version": report.from_version,
                "to_version": report.to_version,
                "migrations": report.migrations,
                "tasks": report.tasks,
                "examined": report.examined,
                "changed": report.changed,
                "resumed": report.resumed,
                "dry_run": report.dry_run,
                "up_to_date": report.up_to_date,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    if report.up_to_date:
        _say(f"namespace {report.namespace!r} is at schema version {report.to_version}: nothing to do")
        return
    if dry_run:
        under_way = " (a migration is under way: it would resume)" if report.resumed else ""
        _say(
            f"namespace {report.namespace!r} is at schema version {report.from_version}{under_way}; "
            f"migrate would move it to {report.to_version}:"
        )
        for line in report.migrations:
            _say(f"  {line}")
        _say(f"  ({report.tasks} task records to walk; nothing was changed)")
        return
    _say(
        f"migrated namespace {report.namespace!r} from schema version {report.from_version} to "
        f"{report.to_version}{' (resumed)' if report.resumed else ''}: {report.examined} task records "
        f"walked, {report.changed} index entries added, in {report.seconds:.2f} s"
    )


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{n} {kind}" for kind, n in counts.items() if kind != "counters"]
    return ", ".join(shown) or "no records"
