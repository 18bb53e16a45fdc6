"""Schema versions and ``migrate``: refusing other versions, the 1 -> 2 migration on a
populated namespace (dry run, resumable, idempotent), and replicas of the old and
the new version sharing a namespace through a migration."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import redis.asyncio as aioredis
from _ops_support import fresh_namespace, make_task, redis_config

from ponos_redis import (
    MemoryAggregatorStore,
    NamespaceLostError,
    SchemaVersionError,
    TaskStatus,
)
from ponos_redis._scripts import SCRIPT_NAMES, lua_dir, script_source
from ponos_redis.backends import memory as fake
from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.keys import SCHEMA_VERSION, Keys
from ponos_redis.ops import export_namespace, migrate_namespace
from ponos_redis.runtime._service import FATAL_ERRORS

pytestmark = pytest.mark.timeout(60)

CHAINS = (1, 2, 3)


def test_every_writing_script_runs_the_namespace_guard_first() -> None:
    """The schema check lives in the guard, so every writing script must call it: the
    migration scripts excepted, which check the epoch themselves (the version they
    move would refuse them)."""
    exempt = {"namespace_open", "migrate_begin", "migrate_chain_index"}
    for name in SCRIPT_NAMES:
        text = (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")
        if text.startswith("#!lua flags=no-writes") or name in exempt:
            continue
        body = text[text.index("]]") + 2 :]
        guard = body.find("namespace_lost(KEYS[#KEYS], ARGV[#ARGV])")
        assert guard != -1, f"lua/{name}.lua does not run the namespace guard"
        assert "redis.call(" not in body[:guard], f"lua/{name}.lua calls Redis before its guard"
    for name in ("migrate_begin", "migrate_chain_index"):
        assert "ARGV[#ARGV] then return {'LOST'" in (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")


def test_the_loader_gives_each_script_its_schema_version() -> None:
    assert f"local SCHEMA_VERSION = '{SCHEMA_VERSION}'" in script_source("save").splitlines()[1]
    assert "local SCHEMA_VERSION = '1'" in script_source("save", schema_version=1)
    assert SchemaVersionError in FATAL_ERRORS  # the runtime stops on it, as on a lost namespace


# -- Redis -------------------------------------------------------------------------


@pytest.fixture
async def populated(redis_url: str, raw: aioredis.Redis) -> tuple[str, dict[bytes, Any]]:
    """A namespace of schema version 1: tasks of every status on three chains, in no
    chain index (as the library wrote them before the index existed). Returns the
    namespace and the chain indexes the current library would have built."""
    namespace = fresh_namespace("v1")
    store = await RedisAggregatorStore.open(redis_config(redis_url, namespace))
    try:
        tasks = [make_task(f"t-{i:04d}", chain_id=CHAINS[i % 3], block_number=1000 + i) for i in range(2500)]
        await store.save_tasks(tasks)
        claimed = await store.claim_tasks("w", limit=600, lease_s=60)
        for c in claimed[:300]:
            await store.complete_task(c.task.task_id, c.token)
        for c in claimed[300:400]:
            await store.fail_task(c.task.task_id, c.token, "boom")
        await store.save_task(make_task("unreadable", chain_id=1, block_number=5))
        await raw.hset(store.keys.task("unreadable"), "threshold_bips", "x")
        await store.claim_tasks("w", limit=2000, lease_s=60)  # sets it aside (and claims the rest)
        assert await raw.zscore(store.keys.set_aside, "unreadable") is not None
    finally:
        await store.close()
    keys = Keys(namespace)
    built = {
        keys.chain_tasks(c).encode(): await raw.zrange(keys.chain_tasks(c), 0, -1, withscores=True)
        for c in CHAINS
    }
    await make_version_1(raw, namespace)
    return namespace, built


async def make_version_1(raw: aioredis.Redis, namespace: str) -> None:
    keys = Keys(namespace)
    await raw.hset(keys.meta, "schema_version", "1")
    for chain in CHAINS:
        await raw.delete(keys.chain_tasks(chain))


async def chain_indexes(raw: aioredis.Redis, namespace: str) -> dict[bytes, Any]:
    keys = Keys(namespace)
    return {
        keys.chain_tasks(c).encode(): await raw.zrange(keys.chain_tasks(c), 0, -1, withscores=True)
        for c in CHAINS
    }


async def test_a_namespace_of_version_1_refuses_to_open_naming_migrate(
    redis_url: str, raw: aioredis.Redis, populated: tuple[str, Any]
) -> None:
    namespace, _ = populated
    meta_before = await raw.hgetall(Keys(namespace).meta)
    with pytest.raises(SchemaVersionError) as info:
        await RedisAggregatorStore.open(redis_config(redis_url, namespace))
    message = str(info.value)
    assert "ponos-redis migrate" in message
    assert namespace in message
    assert "version 1" in message
    assert await raw.hgetall(Keys(namespace).meta) == meta_before


async def test_migrate_builds_the_chain_index_of_a_populated_namespace(
    redis_url: str, raw: aioredis.Redis, populated: tuple[str, dict[bytes, Any]]
) -> None:
    namespace, built = populated
    cfg = redis_config(redis_url, namespace)
    assert all(v == [] for v in (await chain_indexes(raw, namespace)).values())
    meta = await raw.hgetall(Keys(namespace).meta)

    plan = await migrate_namespace(cfg, dry_run=True)
    assert (plan.from_version, plan.to_version, plan.dry_run) == (1, 2, True)
    assert plan.migrations
    assert plan.migrations[0].startswith("1->2: build the per-chain task index")
    assert plan.tasks == 2501
    assert await raw.hgetall(Keys(namespace).meta) == meta, "a dry run changed the meta hash"
    assert all(v == [] for v in (await chain_indexes(raw, namespace)).values())

    seen: list[tuple[int, int | None]] = []
    report = await migrate_namespace(
        cfg, batch=300, progress=lambda _, done, total: seen.append((done, total))
    )
    assert (report.from_version, report.to_version, report.resumed) == (1, 2, False)
    assert report.examined == 2501
    assert report.changed == 2501
    assert seen[-1] == (2501, 2501)
    assert await chain_indexes(raw, namespace) == built
    after = await raw.hgetall(Keys(namespace).meta)
    assert after[b"schema_version"] == b"2"
    assert b"migration" not in after
    assert after[b"epoch"] != meta[b"epoch"], "a migration from 1 gives the namespace a new epoch"

    async with await RedisAggregatorStore.open(cfg) as store:
        # what the index is for: the open tasks of a chain above a reorged block
        failed = await store.fail_orphaned_tasks(2, 3000)
        open_on_2 = [t for t in built[Keys(namespace).chain_tasks(2).encode()] if t[1] > 3000]
        statuses = {t[0].decode(): (await store.get_task(t[0].decode())).status for t in open_on_2}
        assert set(failed) == set(statuses)
        assert all(s is TaskStatus.FAILED for s in statuses.values())

    again = await migrate_namespace(cfg)
    assert again.up_to_date
    assert again.examined == 0
    assert (await raw.hgetall(Keys(namespace).meta))[b"epoch"] == after[b"epoch"]


async def test_an_interrupted_migration_refuses_stores_and_resumes(
    redis_url: str, raw: aioredis.Redis, populated: tuple[str, dict[bytes, Any]]
) -> None:
    namespace, built = populated
    cfg = redis_config(redis_url, namespace)
    steps = 0

    def crash(_: str, done: int, total: int | None) -> None:
        nonlocal steps
        steps += 1
        if steps == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or a killed process

    with pytest.raises(KeyboardInterrupt):
        await migrate_namespace(cfg, batch=400, progress=crash)
    meta = await raw.hgetall(Keys(namespace).meta)
    assert meta[b"migration"] == b"1->2"
    assert meta[b"migration_cursor"] == b"2:800"
    assert meta[b"schema_version"] == b"2"
    with pytest.raises(SchemaVersionError) as info:
        await RedisAggregatorStore.open(cfg)
    assert "migrate" in str(info.value)
    assert "interrupted" in str(info.value)
    plan = await migrate_namespace(cfg, dry_run=True)
    assert plan.resumed
    assert plan.from_version == 1
    assert plan.dry_run

    report = await migrate_namespace(cfg)
    assert report.resumed
    assert report.to_version == 2
    assert await chain_indexes(raw, namespace) == built
    assert b"migration" not in await raw.hgetall(Keys(namespace).meta)
    async with await RedisAggregatorStore.open(cfg) as store:
        assert (await store.count_tasks())[TaskStatus.COMPLETED] == 300


async def test_old_and_new_replicas_through_a_migration(redis_url: str, raw: aioredis.Redis) -> None:
    """An old replica (scripts written for version 1) works on a version 1 namespace;
    a new one refuses to open it. Once migrated, the old one's next write is refused
    (nothing written), the new one opens, and takes over the old one's work."""
    namespace = fresh_namespace("rolling")
    cfg = redis_config(redis_url, namespace)
    async with await RedisAggregatorStore.open(cfg) as creator:
        await creator.save_task(make_task("before"))
    await make_version_1(raw, namespace)

    old = await open_old_replica(cfg)
    try:
        assert await old.save_task(make_task("by-old", chain_id=2, block_number=7)) is True
        await raw.delete(Keys(namespace).chain_tasks(2))  # as the first layout saved it: in no index
        [held] = await old.claim_tasks("old-replica", limit=1, lease_s=60)
        with pytest.raises(SchemaVersionError, match="ponos-redis migrate"):
            await RedisAggregatorStore.open(cfg)

        report = await migrate_namespace(cfg)
        assert (report.from_version, report.to_version) == (1, 2)

        with pytest.raises(SchemaVersionError) as info:
            await old.save_task(make_task("too-late"))
        assert "upgrade ponos-redis" in str(info.value)
        assert "nothing was written" in str(info.value)
        with pytest.raises(SchemaVersionError):
            await old.complete_task(held.task.task_id, held.token)
        assert await raw.exists(Keys(namespace).task("too-late")) == 0

        async with await RedisAggregatorStore.open(cfg) as new:
            assert (await new.get_task(held.task.task_id)).status is TaskStatus.PROCESSING
            await new.complete_task(held.task.task_id, held.token)  # the token is still the task's
            assert await new.fail_orphaned_tasks(2, 1) == ["by-old"]  # indexed by the migration
            await new.save_task(make_task("after"))
            [fresh] = await new.claim_tasks("new-replica", limit=1, lease_s=60)
            assert fresh.token > held.token
    finally:
        await old.close()


async def test_a_replica_whose_scripts_predate_the_schema_check_stops_on_the_new_epoch(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """Libraries that wrote version 1 check the epoch, not the version, in their
    scripts: the migration from 1 gives the namespace a new epoch, which stops them."""
    namespace = fresh_namespace("pre-check")
    cfg = redis_config(redis_url, namespace)
    async with await RedisAggregatorStore.open(cfg):
        pass
    await make_version_1(raw, namespace)
    old = await open_old_replica(cfg, schema_check=False)
    try:
        await old.save_task(make_task("ok"))
        await migrate_namespace(cfg)
        with pytest.raises(NamespaceLostError):
            await old.save_task(make_task("refused"))
        assert await raw.exists(Keys(namespace).task("refused")) == 0
    finally:
        await old.close()


async def test_a_newer_namespace_is_refused_by_migrate_and_by_scripts(
    redis_url: str, raw: aioredis.Redis
) -> None:
    namespace = fresh_namespace("newer")
    cfg = redis_config(redis_url, namespace)
    store = await RedisAggregatorStore.open(cfg)
    try:
        await raw.hset(store.keys.meta, "schema_version", str(SCHEMA_VERSION + 1))
        with pytest.raises(SchemaVersionError, match="upgrade ponos-redis"):
            await store.save_task(make_task("x"))
        with pytest.raises(SchemaVersionError, match="upgrade ponos-redis"):
            await migrate_namespace(cfg)
        with pytest.raises(SchemaVersionError, match="upgrade ponos-redis"):
            await export_namespace(cfg, io.BytesIO())
        assert await raw.exists(store.keys.task("x")) == 0
    finally:
        await store.close()


async def test_migrating_a_missing_namespace_creates_nothing(redis_url: str, raw: aioredis.Redis) -> None:
    namespace = fresh_namespace("missing")
    with pytest.raises(NamespaceLostError):
        await migrate_namespace(redis_config(redis_url, namespace))
    assert await raw.exists(Keys(namespace).meta) == 0


async def test_an_empty_namespace_of_version_1_is_not_upgraded_on_open(
    redis_url: str, raw: aioredis.Redis
) -> None:
    namespace = fresh_namespace("empty")
    cfg = redis_config(redis_url, namespace)
    async with await RedisAggregatorStore.open(cfg):
        pass
    await raw.hset(Keys(namespace).meta, "schema_version", "1")
    with pytest.raises(SchemaVersionError):
        await RedisAggregatorStore.open(cfg)
    assert await raw.hget(Keys(namespace).meta, "schema_version") == b"1"
    report = await migrate_namespace(cfg)
    assert report.examined == 0
    assert report.to_version == 2
    async with await RedisAggregatorStore.open(cfg):
        pass


_OLD_GUARD = """local function namespace_lost(meta_key, epoch)
  local current = redis.call('HGET', meta_key, 'epoch')
  if current ~= epoch then return {'LOST', current or ''} end
  return nil
end
"""


async def open_old_replica(cfg: Any, *, schema_check: bool = True) -> RedisAggregatorStore:
    """A store as a replica of the version-1 library runs it: it opened the namespace at
    version 1, and its scripts were written for version 1 (with ``schema_check=False``,
    also without the version check in their guard, as before that check existed)."""

    class OldReplica(RedisAggregatorStore):
        async def _open_namespace(self) -> None:
            version, _ = await self._read_namespace(create=False)
            assert version == 1

    store = await OldReplica.open(cfg)
    sources = {name: script_source(name, schema_version=1) for name in SCRIPT_NAMES}
    if not schema_check:
        guard = re.compile(r"local function namespace_lost\(meta_key, epoch\)\n.*?\nend\n", re.S)
        sources = {name: guard.sub(lambda _: _OLD_GUARD, text) for name, text in sources.items()}
    store._scripts = {name: store._client.register_script(text) for name, text in sources.items()}
    return store


# -- the fake ----------------------------------------------------------------------


class _OldMemoryStore(MemoryAggregatorStore):
    _schema_version = 1


async def test_the_fake_checks_the_schema_version_on_open_and_on_write() -> None:
    namespace = fresh_namespace("fake")
    old = _OldMemoryStore(namespace)  # creates the namespace at version 1
    await old.save_task(make_task("by-old"))
    with pytest.raises(SchemaVersionError, match="ponos-redis migrate"):
        MemoryAggregatorStore(namespace)
    plan = await migrate_namespace("memory", namespace=namespace, dry_run=True)
    assert (plan.from_version, plan.to_version, plan.tasks) == (1, 2, 1)
    report = await migrate_namespace("memory", namespace=namespace)
    assert (report.from_version, report.to_version) == (1, 2)
    with pytest.raises(SchemaVersionError, match="upgrade ponos-redis"):
        await old.save_task(make_task("too-late"))
    new = MemoryAggregatorStore(namespace)
    assert [t.task_id for t in await new.list_pending_tasks()] == ["by-old"]
    assert (await migrate_namespace("memory", namespace=namespace)).up_to_date
    fake.reset_memory_namespaces(namespace)
