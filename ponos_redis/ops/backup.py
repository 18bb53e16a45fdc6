"""Backups of a namespace, and restoring one (``ponos-redis backup`` / ``restore``).

A backup is a directory ``<namespace>-<UTC time>`` (``aggregator-mainnet-20250102T030405.123Z``)
under the directory given, holding:

- ``export.jsonl``: the namespace's export (:mod:`.export`): every record,
  consistent per record, with its own checksum;
- ``dump.rdb``, where the server allows it: ``BGSAVE``, then a copy of the RDB
  file when the server's data directory is readable from this machine (the
  same host, or a shared volume). It is the whole server at one instant, every
  namespace in it: what a disaster recovery of the server starts from. A
  remote server, or one that refuses ``CONFIG GET``, gets no RDB copy, and the
  manifest says why. (The AOF is not copied: the RDB holds the same data at one
  instant, while a running server's AOF changes under a copy.)
- ``manifest.json``: the namespace, the time, the library version, and the
  SHA-256 and size of each file.

It is written under a temporary name and renamed when complete, so a backup
directory is never half written. With ``keep=N`` the backups of the same
namespace in that directory are pruned to the newest N afterwards.

:func:`restore_namespace` verifies every file against the manifest, then
imports the export into a namespace that holds no record, or, with
``force``, into one that does (a record that differs still refuses the import,
before anything is written). The RDB file is not used by it: restoring a whole
server is a server operation (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import _validate as v
from ..errors import AlreadyExistsError, InvalidInputError
from ._target import StoreOrConfig, open_namespace
from .export import ExportReport, ImportReport, Progress, export_namespace, import_namespace, read_file

__all__ = ["BackupReport", "RestoreReport", "backup_namespace", "list_backups", "restore_namespace"]

MANIFEST = "manifest.json"
EXPORT_FILE = "export.jsonl"
BACKUP_FORMAT = "ponos-redis-backup"
_STAMP = "%Y%m%dT%H%M%S"


@dataclass(frozen=True)
class BackupReport:
    """One backup made.

    Attributes:
        path: the backup's directory.
        export: the export's report.
        snapshot: the server snapshot's file name, or None when skipped.
        snapshot_note: what was done about the server snapshot, or why it was skipped.
        pruned: backup directories removed by ``keep``.
        seconds: how long it took.
    """

    path: Path
    export: ExportReport
    snapshot: str | None
    snapshot_note: str
    pruned: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class RestoreReport:
    """One restore.

    Attributes:
        path: the backup restored.
        backup_namespace: the namespace the backup was taken of.
        imported: the import's report.
        seconds: how long it took.
    """

    path: Path
    backup_namespace: str
    imported: ImportReport
    seconds: float = 0.0


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _pattern(namespace: str) -> re.Pattern[str]:
    return re.compile(re.escape(namespace) + r"-\d{8}T\d{6}\.\d{3}Z(-\d+)?")


def list_backups(directory: str | Path, namespace: str) -> list[Path]:
    """The complete backups of ``namespace`` in ``directory``, oldest first."""
    root = Path(directory)
    if not root.is_dir():
        return []
    pattern = _pattern(namespace)
    found = [p for p in root.iterdir() if pattern.fullmatch(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


async def backup_namespace(
    store_or_config: StoreOrConfig,
    to: str | Path,
    *,
    namespace: str | None = None,
    keep: int | None = None,
    server_snapshot: bool = True,
    snapshot_timeout_s: float = 300.0,
    progress: Progress | None = None,
) -> BackupReport:
    """Take a backup of a namespace into a new timestamped directory under ``to``.

    Args:
        store_or_config: an open store (left open), or a config, mapping,
            ``"memory"`` or Redis URL (opened without creating the namespace).
        to: the directory that holds the backups (created if missing).
        namespace: overrides the config's namespace.
        keep: afterwards, keep only the newest ``keep`` backups of the namespace there.
        server_snapshot: also ``BGSAVE`` and copy the server's RDB file where possible.
        snapshot_timeout_s: how long to wait for ``BGSAVE``.
        progress: called as ``progress(phase, done, total)`` while it works.

    Returns:
        where the backup is, and what it holds.
    """
    if keep is not None and v.integer(keep, "keep") < 1:
        raise InvalidInputError(f"keep must be at least 1, got {keep}")
    started = time.perf_counter()
    root = Path(to)
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    async with open_namespace(store_or_config, namespace, "read") as target:
        name = _new_name(root, target.namespace)
        partial = root / f".{name}.partial"
        await asyncio.to_thread(partial.mkdir)
        try:
            export = await export_namespace(target.store, partial / EXPORT_FILE, progress=progress)
            if server_snapshot:
                if progress is not None:
                    progress("snapshot", 0, None)
                snap = await target.snapshot(partial, timeout_s=snapshot_timeout_s)
            else:
                snap = _skipped("skipped: not asked for (--no-server-snapshot)")
            files: dict[str, Any] = {}
            for file_name in [EXPORT_FILE, *([snap.file] if snap.file else [])]:
                digest, size = await asyncio.to_thread(_sha256, partial / file_name)
                files[file_name] = {"sha256": digest, "bytes": size}
            manifest = {
                "format": BACKUP_FORMAT,
                "format_version": 1,
                "namespace": target.namespace,
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "library": _library_version(),
                "source": target.kind,
                "export": {
                    "records": export.records,
                    "counts": export.counts,
                    "sha256": export.sha256,
                    "consistency": export.consistency,
                    "skipped": export.skipped,
                },
                "server_snapshot": {"file": snap.file, "note": snap.reason},
                "files": files,
            }
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            final = root / name
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    pruned: list[Path] = []
    if keep is not None:
        for old in list_backups(root, target.namespace)[:-keep]:
            await asyncio.to_thread(shutil.rmtree, old)
            pruned.append(old)
    return BackupReport(
        path=final,
        export=export,
        snapshot=snap.file,
        snapshot_note=snap.reason,
        pruned=pruned,
        seconds=time.perf_counter() - started,
    )


def _skipped(reason: str) -> Any:
    from ._redis import Snapshot

    return Snapshot(None, reason)


def _new_name(root: Path, namespace: str) -> str:
    now = datetime.now(UTC)
    name = f"{namespace}-{now.strftime(_STAMP)}.{now.microsecond // 1000:03d}Z"
    candidate, n = name, 1
    while (root / candidate).exists() or (root / f".{candidate}.partial").exists():
        candidate = f"{name}-{n}"
        n += 1
    return candidate


def verify_backup(path: str | Path) -> dict[str, Any]:
    """The backup's manifest, once every file it lists matches its checksum.

    Raises:
        InvalidInputError: no manifest, a file missing, or a checksum mismatch.
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{root} is not a backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{manifest_path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise InvalidInputError(f"{manifest_path} is not a {BACKUP_FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or EXPORT_FILE not in files:
        raise InvalidInputError(f"{manifest_path} lists no {EXPORT_FILE}")
    for file_name, expected in files.items():
        file = root / file_name
        if not file.is_file():
            raise InvalidInputError(f"backup {root}: {file_name} is missing")
        digest, size = _sha256(file)
        if digest != expected.get("sha256") or size != expected.get("bytes"):
            raise InvalidInputError(
                f"backup {root}: {file_name} does not match its checksum in the manifest "
                "(changed or damaged); nothing was written"
            )
    return manifest


async def restore_namespace(
    store_or_config: StoreOrConfig,
    backup: str | Path,
    *,
    namespace: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore a backup into a namespace: verified by checksum, into an empty namespace.

    Args:
        store_or_config: an open store (left open), or a config, mapping,
            ``"memory"`` or Redis URL (opened as a store would be: it creates
            the namespace when ``create_namespace`` allows).
        backup: the backup's directory.
        namespace: overrides the config's namespace (which may differ from the backup's).
        force: restore into a namespace that holds records too (records that
            differ from the backup's still refuse the restore, writing nothing).
        progress: called as ``progress(phase, done, total)`` while it works.

    Raises:
        InvalidInputError: the backup is incomplete, changed or damaged (nothing was written).
        AlreadyExistsError: the namespace is not empty (without ``force``), or
            a record in it differs from the backup's.
    """
    started = time.perf_counter()
    root = Path(backup)
    manifest = await asyncio.to_thread(verify_backup, root)
    export = await asyncio.to_thread(read_file, root / EXPORT_FILE)
    async with open_namespace(store_or_config, namespace, "write") as target:
        if not force:
            found = await target.first_record()
            if found is not None:
                raise AlreadyExistsError(
                    f"namespace {target.namespace!r} is not empty (it holds {found}): restore goes into "
                    "an empty namespace; give --force to import into it anyway (nothing was written)"
                )
        imported = await import_namespace(target.store, export, progress=progress)
    return RestoreReport(
        path=root,
        backup_namespace=str(manifest.get("namespace", "")),
        imported=imported,
        seconds=time.perf_counter() - started,
    )


def _library_version() -> str:
    from .. import __version__

    return __version__
