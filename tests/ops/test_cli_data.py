"""The ``export``, ``import``, ``backup``, ``restore`` and ``migrate`` commands, run as a
user runs them (the installed ``ponos-redis`` script, in a subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from _ops_support import fresh_namespace, make_task, populate, redis_config

from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.cli import data as data_cli
from ponos_redis.keys import Keys

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    script = Path(sys.executable).with_name("ponos-redis")
    return subprocess.run([str(script), *args], capture_output=True, input=stdin, timeout=60, check=False)


def as_json(done: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr.decode()
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


async def test_export_import_backup_restore_and_migrate(redis_url: str, tmp_path: Path) -> None:
    src, dst, restored = fresh_namespace("src"), fresh_namespace("dst"), fresh_namespace("restored")
    agg = await RedisAggregatorStore.open(redis_config(redis_url, src))
    exe = await RedisExecutorStore.open(redis_config(redis_url, src))
    try:
        await populate(agg, exe)
    finally:
        await agg.close()
        await exe.close()
    store = ["--store", redis_url]

    file = tmp_path / "src.jsonl"
    exported = as_json(cli("export", str(file), *store, "--namespace", src, "--json"))
    assert exported["records"] == 23
    assert exported["consistency"] == "per-record"
    human = cli("export", str(tmp_path / "again.jsonl"), *store, "--namespace", src)
    assert human.returncode == 0
    assert b"exported 23 records" in human.stdout

    dry = as_json(cli("import", str(file), *store, "--namespace", dst, "--dry-run", "--json"))
    assert (dry["written"], dry["dry_run"]) == (23, True)
    imported = as_json(cli("import", str(file), *store, "--namespace", dst, "--json"))
    assert (imported["written"], imported["identical"]) == (23, 0)
    again = cli("import", str(file), *store, "--namespace", dst)
    assert again.returncode == 0
    assert b"wrote 0 records" in again.stdout
    assert b"23 already there" in again.stdout

    # standard output and input
    piped = cli("export", "-", *store, "--namespace", src)
    assert piped.returncode == 0
    assert piped.stdout.startswith(b'{"type":"header"')
    assert cli("import", "-", *store, "--namespace", dst, stdin=piped.stdout).returncode == 0

    backups = tmp_path / "backups"
    for _ in range(3):
        made = as_json(
            cli("backup", "--to", str(backups), "--keep", "2", *store, "--namespace", src, "--json")
        )
    assert made["server_snapshot"] == "dump.rdb"
    assert len(made["pruned"]) == 1
    assert len([p for p in backups.iterdir() if p.name.startswith(src)]) == 2
    path = str(made["path"])
    done = as_json(cli("restore", path, *store, "--namespace", restored, "--json"))
    assert (done["written"], done["backup_namespace"]) == (23, src)
    refused = cli("restore", path, *store, "--namespace", restored)
    assert refused.returncode == 1
    assert b"not empty" in refused.stderr
    assert cli("restore", path, "--force", *store, "--namespace", restored).returncode == 0

    up_to_date = as_json(cli("migrate", *store, "--namespace", src, "--json"))
    assert up_to_date["up_to_date"] is True


async def test_migrate_from_the_command_line(redis_url: str, raw: aioredis.Redis) -> None:
    namespace = fresh_namespace("cli-migrate")
    async with await RedisAggregatorStore.open(redis_config(redis_url, namespace)) as store:
        await store.save_tasks([make_task(f"t-{i}", chain_id=5) for i in range(50)])
    await raw.hset(Keys(namespace).meta, "schema_version", "1")
    await raw.delete(Keys(namespace).chain_tasks(5))
    store = ["--store", redis_url, "--namespace", namespace]

    refused = cli("reap", *store)
    assert refused.returncode != 0
    assert b"ponos-redis migrate" in refused.stderr
    plan = cli("migrate", "--dry-run", *store)
    assert plan.returncode == 0, plan.stderr
    assert b"schema version 1" in plan.stdout
    assert b"50 task records" in plan.stdout
    assert await raw.exists(Keys(namespace).chain_tasks(5)) == 0
    done = as_json(cli("migrate", *store, "--json"))
    assert (done["from_version"], done["to_version"], done["changed"]) == (1, 2, 50)
    assert await raw.zcard(Keys(namespace).chain_tasks(5)) == 50
    assert b"nothing to do" in cli("migrate", *store).stdout


async def test_a_malformed_file_is_refused_naming_the_line(redis_url: str, tmp_path: Path) -> None:
    src, dst = fresh_namespace(), fresh_namespace()
    async with await RedisAggregatorStore.open(redis_config(redis_url, src)) as store:
        await store.save_tasks([make_task(f"t-{i}") for i in range(5)])
    file = tmp_path / "export.jsonl"
    assert cli("export", str(file), "--store", redis_url, "--namespace", src).returncode == 0
    lines = file.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"type":"task","seq":"x"}\n'
    file.write_bytes(b"".join(lines))
    done = cli("import", str(file), "--store", redis_url, "--namespace", dst)
    assert done.returncode == 2
    assert done.stderr.startswith(b"error: InvalidInputError:")
    assert b"line 4" in done.stderr
    assert b"Traceback" not in done.stderr


def test_the_progress_bar_shows_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    with data_cli._progress(False) as progress:
        assert progress is None  # stderr is not a terminal under pytest
    monkeypatch.setattr(sys, "stderr", _Tty())
    with data_cli._progress(True) as progress:
        assert progress is None  # --json
    with data_cli._progress(False) as progress:
        assert progress is not None
        progress("read", 5, 10)
        progress("read", 10, 10)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True
