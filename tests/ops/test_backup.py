"""Backups (the export, the server's RDB file where it can be copied, a checksummed
manifest), pruning to the newest N, and restore into an empty namespace."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from _ops_support import PairFactory, fresh_namespace, make_task, populate, records, redis_config

from ponos_redis import AlreadyExistsError, InvalidInputError
from ponos_redis.ops import _redis as redis_side
from ponos_redis.ops import backup_namespace, export_namespace, list_backups, restore_namespace

pytestmark = pytest.mark.timeout(60)


async def test_a_backup_holds_the_export_the_rdb_file_and_their_checksums(
    make_pair: PairFactory, backend: str, tmp_path: Path
) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    report = await backup_namespace(agg, tmp_path)
    assert report.path.parent == tmp_path
    assert report.path.name.startswith(f"{agg.namespace}-")
    assert report.path.name.endswith("Z")
    manifest = json.loads((report.path / "manifest.json").read_text())
    assert manifest["namespace"] == agg.namespace
    assert manifest["format"] == "ponos-redis-backup"
    for name, entry in manifest["files"].items():
        data = (report.path / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
    assert manifest["export"]["counts"]["task"] == 13
    if backend == "redis":
        # The test server runs on this machine: BGSAVE, then a copy of its RDB file.
        assert report.snapshot == "dump.rdb"
        assert set(manifest["files"]) == {"export.jsonl", "dump.rdb"}
        assert (report.path / "dump.rdb").read_bytes().startswith(b"REDIS")
        assert "BGSAVE" in report.snapshot_note
    else:
        assert report.snapshot is None
        assert "fake" in report.snapshot_note
        assert set(manifest["files"]) == {"export.jsonl"}
    assert not _hidden(tmp_path), "a partial backup was left"


def _hidden(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.redis_only
async def test_a_server_whose_directory_is_not_readable_here_is_skipped_and_said_so(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_side, "_readable_dir", lambda path: False)
    ns = fresh_namespace()
    report = await _backup_of_new_namespace(redis_url, ns, tmp_path)
    assert report.snapshot is None
    assert "not readable from this machine" in report.snapshot_note
    manifest = json.loads((report.path / "manifest.json").read_text())
    assert manifest["server_snapshot"]["file"] is None
    assert "not readable" in manifest["server_snapshot"]["note"]
    assert set(manifest["files"]) == {"export.jsonl"}


async def _backup_of_new_namespace(url: str, namespace: str, to: Path, **options: object) -> object:
    from ponos_redis.backends.redis import RedisAggregatorStore

    async with await RedisAggregatorStore.open(redis_config(url, namespace)) as store:
        await store.save_task(make_task("t-1"))
    return await backup_namespace(redis_config(url, namespace), to, **options)  # type: ignore[arg-type]


async def test_keep_prunes_to_the_newest_backups_of_the_namespace_only(
    make_pair: PairFactory, tmp_path: Path
) -> None:
    agg, _ = await make_pair()
    other, _ = await make_pair()
    await agg.save_task(make_task("t-1"))
    kept_other = (await backup_namespace(other, tmp_path, server_snapshot=False)).path
    made = [(await backup_namespace(agg, tmp_path, server_snapshot=False)).path for _ in range(3)]
    assert list_backups(tmp_path, agg.namespace) == made
    report = await backup_namespace(agg, tmp_path, keep=2, server_snapshot=False)
    assert report.pruned == made[:2]
    assert list_backups(tmp_path, agg.namespace) == [made[2], report.path]
    assert list_backups(tmp_path, other.namespace) == [kept_other]
    with pytest.raises(InvalidInputError):
        await backup_namespace(agg, tmp_path, keep=0)


async def test_restore_into_an_empty_namespace_verified_and_refusing_a_full_one(
    make_pair: PairFactory, tmp_path: Path
) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    backup = (await backup_namespace(agg, tmp_path, server_snapshot=False)).path
    before = io.BytesIO()
    await export_namespace(agg, before)

    target, _ = await make_pair()
    report = await restore_namespace(target, backup)
    assert report.backup_namespace == agg.namespace
    assert report.imported.written == 23
    after = io.BytesIO()
    await export_namespace(target, after)
    assert records(after.getvalue()) == records(before.getvalue())

    # Not empty now: refused, unless forced (the same records: nothing to write).
    with pytest.raises(AlreadyExistsError, match="not empty"):
        await restore_namespace(target, backup)
    forced = await restore_namespace(target, backup, force=True)
    assert (forced.imported.written, forced.imported.identical) == (0, 23)

    # A namespace holding something else: refused, even with --force if a record differs.
    busy, _ = await make_pair()
    await busy.save_task(make_task("t-05", payload=b"different"))
    with pytest.raises(AlreadyExistsError, match="not empty"):
        await restore_namespace(busy, backup)
    with pytest.raises(AlreadyExistsError, match="'t-05'"):
        await restore_namespace(busy, backup, force=True)
    assert sum((await busy.count_tasks()).values()) == 1


async def test_a_damaged_backup_is_refused_before_anything_is_written(
    make_pair: PairFactory, tmp_path: Path
) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    backup = (await backup_namespace(agg, tmp_path, server_snapshot=False)).path
    export = backup / "export.jsonl"
    data = bytearray(export.read_bytes())
    data[len(data) // 2] ^= 0x01
    export.write_bytes(bytes(data))
    target, _ = await make_pair()
    with pytest.raises(InvalidInputError, match="does not match its checksum"):
        await restore_namespace(target, backup)
    assert sum((await target.count_tasks()).values()) == 0
    with pytest.raises(InvalidInputError, match="not a backup"):
        await restore_namespace(target, tmp_path)
