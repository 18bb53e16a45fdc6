"""After ``SCRIPT FLUSH`` (a restart, a failover to a replica) every store call
still works: the store loads its scripts again (lesson 6)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from _redis_support import TIMEOUT_S, Stores, all_events, make_inflight, make_performer, make_task

from ponos_redis import (
    AvsConfig,
    BlockRecord,
    CurveType,
    Deployment,
    DeploymentStatus,
    OperatorSetTaskConfig,
    TaskStatus,
)
from ponos_redis._redis_server import RedisServer, redis_server_available
from ponos_redis._scripts import SCRIPT_NAMES, script_source
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.keys import SCHEMA_VERSION
from ponos_redis.ops import export_namespace, import_namespace, migrate_namespace
from ponos_redis.ops.doctor import diagnose, repair
from ponos_redis.ops.inspect import RedisNamespaceView, inspect_namespace

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(30)]

AVS = "0x" + "ab" * 20


def sha(name: str) -> str:
    return hashlib.sha1(script_source(name).encode("utf-8")).hexdigest()


async def flush(raw: aioredis.Redis) -> None:
    await raw.script_flush()
    assert not any(await raw.script_exists(*(sha(n) for n in SCRIPT_NAMES)))


Step = tuple[str, Callable[[], Awaitable[Any]]]


def aggregator_steps(store: RedisAggregatorStore, state: dict[str, Any]) -> list[Step]:
    """One call per aggregator script, in an order where each one succeeds."""

    async def claim() -> None:
        claimed = await store.claim_tasks("replica-a", limit=2, lease_s=30)
        assert [c.task.task_id for c in claimed] == ["t-1", "t-2"]
        state["claimed"] = {c.task.task_id: c for c in claimed}

    async def renew() -> None:
        await store.renew_task_lease("t-1", state["claimed"]["t-1"].token, lease_s=60)

    async def complete() -> None:
        await store.complete_task("t-1", state["claimed"]["t-1"].token)
        assert (await store.get_task("t-1")).status is TaskStatus.COMPLETED

    async def release() -> None:
        await store.release_task("t-2", state["claimed"]["t-2"].token)

    async def fail() -> None:
        [again] = await store.claim_tasks("replica-a", limit=1, lease_s=30)
        await store.fail_task(again.task.task_id, again.token, "boom")

    async def override() -> None:
        await store.save_task(make_task("t-3"))
        await store.update_task_status("t-3", TaskStatus.PROCESSING)

    async def lease_acquire() -> None:
        state["lease"] = await store.acquire_chain_lease(1, "poller", ttl_s=30)
        assert state["lease"] is not None

    async def lease_renew() -> None:
        state["lease"] = await store.renew_chain_lease(state["lease"], ttl_s=30)

    async def advance() -> None:
        await store.set_last_processed_block(1, 10, fence=state["lease"].token)
        assert await store.get_last_processed_block(1) == 10

    async def save_block() -> None:
        await store.save_block(BlockRecord(chain_id=1, number=10, hash="0xa", parent_hash="0x9", timestamp=1))

    async def rewind() -> None:
        await store.rewind_chain(1, 5)

    async def delete_block() -> None:
        await store.save_block(BlockRecord(chain_id=1, number=4, hash="0xb", parent_hash="0x3", timestamp=1))
        await store.delete_block(1, 4)

    async def put_hash() -> None:
        await store.save_avs_config(
            AVS,
            AvsConfig(
                aggregator_operator_set_id=0, executor_operator_set_ids=[1], curve_type=CurveType.BN254
            ),
        )
        await store.save_operator_set_config(
            AVS, 1, OperatorSetTaskConfig(task_sla_s=10.0, curve_type=CurveType.ECDSA)
        )
        assert (await store.get_avs_config(AVS)).executor_operator_set_ids == [1]

    async def fail_orphaned() -> None:
        await store.save_task(make_task("t-4", block_number=200))
        assert await store.fail_orphaned_tasks(1, 150) == ["t-4"]

    async def runner_lease() -> None:
        assert await store.try_runner_lease("reaper", "replica-a", ttl_s=30) is True

    return [
        ("save", lambda: store.save_tasks([make_task("t-1"), make_task("t-2")])),
        ("claim", claim),
        ("renew", renew),
        ("complete", complete),
        ("release", release),
        ("fail", fail),
        ("override", override),
        ("reap", store.reap_expired_leases),
        ("trim", store.trim_finished_tasks),
        ("delete", lambda: store.delete_task("t-3")),
        ("lease_acquire", lease_acquire),
        ("lease_renew", lease_renew),
        ("advance", advance),
        ("save_block", save_block),
        ("rewind", rewind),
        ("delete_block", delete_block),
        ("lease_release", lambda: store.release_chain_lease(state["lease"])),
        ("put_hash", put_hash),
        ("fail_orphaned", fail_orphaned),
        ("runner_lease", runner_lease),
    ]


def executor_steps(store: RedisExecutorStore) -> list[Step]:
    async def mark() -> None:
        assert await store.mark_task_processed("t-1") is True
        assert await store.mark_task_processed("t-1") is False

    async def is_processed() -> None:
        assert await store.is_task_processed("t-1") is True
        assert await store.is_task_processed("t-2") is False

    async def put_record() -> None:
        await store.save_performer_state(make_performer("perf-1"))
        await store.save_inflight_task(make_inflight("i-1"))

    async def delete_record() -> None:
        await store.delete_performer_state("perf-1")
        await store.delete_inflight_task("i-1")

    async def deployment_save() -> None:
        await store.save_deployment(
            Deployment(deployment_id="d-1", avs_address=AVS, started_at=make_performer().created_at)
        )

    async def deployment_update() -> None:
        await store.update_deployment_status("d-1", DeploymentStatus.DEPLOYING)
        assert [e.status for e in await store.list_deployment_history("d-1")] == [
            DeploymentStatus.PENDING,
            DeploymentStatus.DEPLOYING,
        ]

    return [
        ("mark_processed", mark),
        ("is_processed", is_processed),
        ("put_record", put_record),
        ("delete_record", delete_record),
        ("deployment_save", deployment_save),
        ("deployment_update", deployment_update),
    ]


async def test_every_script_reloads_after_script_flush(stores: Stores, raw: aioredis.Redis) -> None:
    aggregator = await stores.aggregator()
    executor = await stores.executor()
    state: dict[str, Any] = {}
    covered: set[str] = set()

    async def set_aside() -> None:
        await aggregator.save_task(make_task("t-unreadable"))
        await raw.hset(aggregator.keys.task("t-unreadable"), "chain_id", "oops")
        assert await aggregator.claim_tasks("replica-a", limit=5, lease_s=30) == []
        assert await raw.zscore(aggregator.keys.set_aside, "t-unreadable") is not None

    async def import_same() -> None:
        # Export the namespace and import it into itself: every record is there, the same.
        exported = io.BytesIO()
        await export_namespace(aggregator, exported)
        exported.seek(0)
        report = await import_namespace(aggregator, exported)
        assert report.written == 0
        assert report.identical > 0

    async def migrate() -> None:
        # As a namespace of the first layout: migrate moves it to this one (the stores
        # opened on it before stop; the one that migrated it goes on).
        await raw.hset(aggregator.keys.meta, "schema_version", "1")
        report = await migrate_namespace(aggregator)
        assert (report.from_version, report.to_version) == (1, SCHEMA_VERSION)

    async def repair_index() -> None:
        # doctor --repair: an index entry whose record is gone is dropped by its script.
        await raw.zadd(aggregator.keys.tasks(TaskStatus.PENDING), {"t-gone": 1})
        async with inspect_namespace(stores.config()) as view:
            assert isinstance(view, RedisNamespaceView)
            report, repairs = await diagnose(view)
            assert not report.ok
            done = await repair(view, repairs, None)
        assert "dropped 1 stale index entry" in done[0]
        assert await raw.zscore(aggregator.keys.tasks(TaskStatus.PENDING), "t-gone") is None

    opening: list[Step] = [("namespace_open", stores.aggregator), ("set_aside", set_aside)]
    data: list[Step] = [
        ("export_hashes", import_same),
        ("import_tasks", import_same),
        ("import_records", import_same),
        ("migrate_begin", migrate),
        ("migrate_chain_index", migrate),
        ("repair_index", repair_index),
    ]
    steps = [*aggregator_steps(aggregator, state), *executor_steps(executor), *opening, *data]
    for name, step in steps:
        await flush(raw)
        await step()
        assert await raw.script_exists(sha(name)) == [True], f"{name} did not run its own script"
        covered.add(name)
    missing = set(SCRIPT_NAMES) - covered
    assert not missing, f"add a step for the new scripts {sorted(missing)}"

    events = await all_events(aggregator)
    assert {"task.saved", "task.claimed", "task.completed", "task.released", "task.failed"} <= {
        e.kind for e in events
    }


async def test_flush_between_replicas_sharing_a_namespace(stores: Stores, raw: aioredis.Redis) -> None:
    """Each replica reloads on its own; a flush seen by one does not confuse the other."""
    a = await stores.aggregator()
    b = await stores.aggregator()
    await a.save_tasks([make_task(f"t-{i}") for i in range(4)])
    await flush(raw)
    [first] = await a.claim_tasks("a", limit=1, lease_s=30)
    await flush(raw)
    [second] = await b.claim_tasks("b", limit=1, lease_s=30)
    assert first.task.task_id != second.task.task_id
    await flush(raw)
    await b.complete_task(second.task.task_id, second.token)
    await flush(raw)
    await a.complete_task(first.task.task_id, first.token)
    counts = await a.count_tasks()
    assert counts[TaskStatus.COMPLETED] == 2
    assert counts[TaskStatus.PENDING] == 2


@pytest.fixture
def replicated_pair() -> Any:
    """A private master with one replica, for the pipelined EVALSHA + WAIT path."""
    if not redis_server_available():
        pytest.skip("redis-server is not on PATH")
    master = RedisServer(extra={"repl-diskless-sync-delay": "0"})
    replica: RedisServer | None = None
    try:
        master.start(timeout=10)
        replica = RedisServer(
            extra={"replicaof": f"127.0.0.1 {master.port}", "repl-diskless-sync-delay": "0"}
        )
        replica.start(timeout=10)
        yield master, replica
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


async def _wait_for_replica(master_url: str) -> None:
    client = aioredis.Redis.from_url(master_url, socket_timeout=5)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        while loop.time() < deadline:
            info = await client.info("replication")
            if int(info.get("connected_slaves", 0)) >= 1 and (await client.wait(1, 100)) >= 1:
                return
            await asyncio.sleep(0.02)
        pytest.fail("the replica did not connect")
    finally:
        await client.aclose()


async def test_replicated_durability_reloads_scripts_inside_its_pipeline(
    replicated_pair: tuple[RedisServer, RedisServer], redis_namespace: str
) -> None:
    master, _ = replicated_pair
    await _wait_for_replica(master.url)
    stores = Stores(master.url, redis_namespace)
    raw = aioredis.Redis.from_url(master.url, socket_timeout=5)
    try:
        store = await stores.aggregator(
            redis={"durability": "replicated", "replicas": 1, "wait_timeout_ms": 2000}
        )
        executor = await stores.executor(
            redis={"durability": "replicated", "replicas": 1, "wait_timeout_ms": 2000}
        )
        await flush(raw)
        assert await store.save_task(make_task("t-1")) is True
        await flush(raw)
        [claimed] = await store.claim_tasks("a", limit=1, lease_s=30)
        await flush(raw)
        await store.complete_task("t-1", claimed.token)
        await flush(raw)
        assert await executor.mark_task_processed("t-1") is True
        await flush(raw)
        assert await executor.is_task_processed("t-1") is True
        assert (await store.get_task("t-1")).status is TaskStatus.COMPLETED
    finally:
        await stores.close()
        await raw.aclose()
