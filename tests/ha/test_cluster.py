"""The stores on a Redis Cluster: three masters, each with one replica, on loopback.

A namespace's keys share one hash tag (``ponos:{ns}:``), so each namespace
lives on one shard; the namespaces here are picked so that they land on every
master (checked against CLUSTER KEYSLOT and CLUSTER SLOTS). On each of them a
contract-style scenario runs every Lua script at least once (a spy on the
store's script runner checks the list against ``SCRIPT_NAMES``), with and
without ``durability: replicated``. Also: WAIT goes to the master of the
namespace's slot; the durability check at open asks every primary; scripts
flushed from every primary are loaded again; and the stores ride through the
failover of a shard's master.

The full contract suite also passes on this cluster (see the report of the
change that added this file for the conftest change and its run time); this
module keeps to a subset that touches every script, to stay fast.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _ha_support import (
    AVS,
    START,
    Ledger,
    command_calls,
    make_task,
    needs,
    produce,
    storage_config,
    wait_until,
    work,
)
from redis.crc import key_slot

from ponos_redis import (
    AvsConfig,
    BlockRecord,
    Consensus,
    ConsensusType,
    CurveType,
    Deployment,
    DeploymentStatus,
    DurabilityError,
    InflightTask,
    ManualClock,
    NotFoundError,
    OperatorSetTaskConfig,
    PerformerState,
    StoreUnavailableError,
    TaskStatus,
)
from ponos_redis._redis_server import RedisServer, find_free_port
from ponos_redis._scripts import SCRIPT_NAMES
from ponos_redis._topology import ClusterTopology, command
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.keys import SCHEMA_VERSION, Keys
from ponos_redis.ops import export_namespace, import_namespace, migrate_namespace

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(90), needs("redis-server", "redis-cli")]

# Writes on the failed shard resume within this bound after SIGKILL of its master
# (cluster-node-timeout 2000 ms; measured here: ~4.5-5 s).
CLUSTER_RESUME_BOUND_S = 20.0


@pytest.fixture(scope="module")
def cluster(redis_secrets: dict[str, str]) -> Iterator[ClusterTopology]:
    """Nodes with the shipped access control; the stores log in as ``ponos``."""
    with ClusterTopology(masters=3, replicas=1, secrets=redis_secrets) as topo:
        yield topo


def masters(cluster: ClusterTopology) -> dict[int, RedisServer]:
    ports = {port for _, _, port in cluster.slot_owners()}
    return {n.port: n for n in cluster.nodes if n.port in ports}


def namespaces_on_every_master(cluster: ClusterTopology, tag: str) -> dict[int, str]:
    """One namespace per master (by port), named ``<tag>-<n>``, checked against the server."""
    owners = cluster.slot_owners()
    chosen: dict[int, str] = {}
    for n in range(1000):
        namespace = f"{tag}-{n}"
        slot = key_slot(Keys(namespace).meta.encode())
        port = next(p for first, last, p in owners if first <= slot <= last)
        if port not in chosen:
            assert cluster.keyslot(Keys(namespace).meta) == slot, "redis-py and the server agree on slots"
            chosen[port] = namespace
        if len(chosen) == len(owners):
            break
    assert len(chosen) == 3, f"namespaces on only {len(chosen)} masters"
    return chosen


def cluster_redis(cluster: ClusterTopology, durability: str, **more: Any) -> dict[str, Any]:
    return {
        **cluster.redis_settings(),
        "durability": durability,
        "replicas": 1,
        "wait_timeout_ms": 2000,
        **more,
    }


def spy_scripts(store: Any, seen: set[str]) -> None:
    """Record the name of every script the store runs."""
    run = store._script

    async def recording(name: str, keys: Any, args: Any, **kwargs: Any) -> Any:
        seen.add(name)
        return await run(name, keys, args, **kwargs)

    store._script = recording


@pytest.fixture
async def opened() -> AsyncIterator[list[Any]]:
    stores: list[Any] = []
    yield stores
    for store in stores:
        await store.close()


async def scenario(agg: RedisAggregatorStore, exe: RedisExecutorStore, clock: ManualClock) -> None:
    """Every aggregator and executor operation that runs a script, with its outcome checked."""
    # tasks: save, claim, renew, complete, fail (retry and final), release, reap, trim, override, delete
    assert await agg.save_task(make_task("t0")) is True
    assert await agg.save_tasks([make_task(f"t{i}") for i in range(1, 7)]) == 6
    claimed = {c.task.task_id: c for c in await agg.claim_tasks("w", limit=7, lease_s=10)}
    assert sorted(claimed) == [f"t{i}" for i in range(7)]
    await agg.renew_task_lease("t0", claimed["t0"].token, lease_s=10)
    await agg.complete_task("t0", claimed["t0"].token)
    await agg.complete_task("t0", claimed["t0"].token)  # a replay is a no-op
    await agg.fail_task("t1", claimed["t1"].token, "try again", retry=True)
    await agg.fail_task("t2", claimed["t2"].token, "broken")
    await agg.release_task("t3", claimed["t3"].token)
    clock.advance(11)  # t4..t6 leases expire; t0 and t2 finished 11 s ago (retention 5 s)
    assert await agg.reap_expired_leases() == 3
    with pytest.raises(NotFoundError):
        await agg.get_task("t0")  # trimmed
    await agg.update_task_status("t1", TaskStatus.PROCESSING)
    await agg.delete_task("t3")
    counts = await agg.count_tasks()
    assert counts[TaskStatus.PROCESSING] == 1
    assert counts[TaskStatus.PENDING] == 3
    assert [t.task_id for t in await agg.list_pending_tasks(AVS)] == ["t4", "t5", "t6"]

    # chain: advance, blocks, rewind, lease acquire / renew / release
    await agg.set_last_processed_block(1, 100)
    for number in (100, 101):
        block = BlockRecord(chain_id=1, number=number, hash=f"0x{number:064x}", parent_hash="0x", timestamp=1)
        await agg.save_block(block)
    await agg.set_last_processed_block(1, 101)
    await agg.rewind_chain(1, 100)
    with pytest.raises(NotFoundError):
        await agg.get_block(1, 101)
    await agg.delete_block(1, 100)
    lease = await agg.acquire_chain_lease(1, "poller", ttl_s=10)
    assert lease is not None
    lease = await agg.renew_chain_lease(lease, ttl_s=10)
    await agg.set_last_processed_block(1, 102, fence=lease.token)
    await agg.release_chain_lease(lease)
    assert await agg.get_last_processed_block(1) == 102

    # reorg: fail the open tasks above a block; the reaper's single-runner lease
    assert await agg.save_task(make_task("t-orphan", block_number=200)) is True
    assert await agg.fail_orphaned_tasks(1, 150) == ["t-orphan"]
    assert await agg.try_runner_lease("reaper", "w", ttl_s=10) is True
    assert await agg.try_runner_lease("reaper", "other", ttl_s=10) is False

    # config cache
    opset = OperatorSetTaskConfig(
        task_sla_s=30.0,
        curve_type=CurveType.BN254,
        task_metadata=b"meta",
        consensus=Consensus(type=ConsensusType.STAKE_PROPORTION_THRESHOLD, threshold=6667),
    )
    await agg.save_operator_set_config(AVS, 1, opset)
    assert await agg.get_operator_set_config(AVS, 1) == opset
    avs = AvsConfig(
        aggregator_operator_set_id=0, executor_operator_set_ids=[1, 2], curve_type=CurveType.ECDSA
    )
    await agg.save_avs_config(AVS, avs)
    assert await agg.get_avs_config(AVS) == avs

    # events, read both ways (XRANGE, then a blocking XREAD that finds nothing new)
    events = [e async for e in agg.events()]
    kinds = {e.kind for e in events}
    assert {"task.saved", "task.claimed", "task.completed", "chain.advanced", "chain.rewound"} <= kinds
    assert [e async for e in agg.events(after=events[-1].id, block_s=0.05)] == []

    # executor: records, deployments, processed markers
    performer = PerformerState(performer_id="p1", avs_address=AVS, created_at=START)
    await exe.save_performer_state(performer)
    assert await exe.list_performer_states() == [performer]
    await exe.delete_performer_state("p1")
    inflight = InflightTask(
        task_id="i1", avs_address=AVS, operator_address="0x" + "12" * 20, received_at=START
    )
    await exe.save_inflight_task(inflight)
    assert await exe.get_inflight_task("i1") == inflight
    await exe.save_deployment(Deployment(deployment_id="d1", avs_address=AVS, started_at=START))
    await exe.update_deployment_status("d1", DeploymentStatus.DEPLOYING)
    assert [e.status for e in await exe.list_deployment_history("d1")] == ["pending", "deploying"]
    assert await exe.mark_task_processed("x1") is True
    assert await exe.mark_task_processed("x1") is False
    assert await exe.is_task_processed("x1") is True


@pytest.mark.parametrize("durability", ["none", "replicated"])
async def test_every_script_runs_on_every_shard(
    cluster: ClusterTopology, opened: list[Any], durability: str
) -> None:
    shards = namespaces_on_every_master(cluster, f"every-script-{durability}")
    by_port = masters(cluster)
    evalsha_before = {port: command_calls(port, "evalsha") for port in by_port}

    async def on(port: int, namespace: str) -> set[str]:
        clock = ManualClock()
        cfg = storage_config(namespace, cluster_redis(cluster, durability), tasks={"retention_s": 5})
        agg = await RedisAggregatorStore.open(cfg, clock=clock)
        exe = await RedisExecutorStore.open(cfg, clock=clock)
        opened.extend((agg, exe))
        seen: set[str] = set()
        # namespace_open ran at open, before a spy could see it: its effect is the epoch.
        if command(port, "HEXISTS", Keys(namespace).meta, "epoch") == 1:
            seen.add("namespace_open")
        spy_scripts(agg, seen)
        spy_scripts(exe, seen)
        await scenario(agg, exe, clock)
        # set_aside: a claimed task whose record cannot be decoded
        await agg.save_task(make_task("t-unreadable"))
        command(port, "HSET", Keys(namespace).task("t-unreadable"), "chain_id", "oops")
        claimed = await agg.claim_tasks("w", limit=10, lease_s=10)
        assert "t-unreadable" not in {c.task.task_id for c in claimed}
        # import_tasks, import_records: the namespace exported (SCAN on its shard) and
        # imported into itself, where every record is already, the same.
        exported = io.BytesIO()
        await export_namespace(agg, exported)
        exported.seek(0)
        imported = await import_namespace(agg, exported)
        assert imported.written == 0
        assert imported.identical > 0
        # migrate_begin, migrate_chain_index: as a namespace of the first layout, migrated.
        command(port, "HSET", Keys(namespace).meta, "schema_version", "1")
        migrated = await migrate_namespace(agg)
        assert migrated.to_version == SCHEMA_VERSION
        assert migrated.examined > 0
        # repair_index (doctor --repair): an index entry whose record is gone is dropped.
        keys = Keys(namespace)
        pending = keys.tasks(TaskStatus.PENDING)
        command(port, "ZADD", pending, "1", "t-gone")
        reply = await agg._script(
            "repair_index", [keys.events, pending, keys.task("t-gone")], ["", 1000, "t-gone", "gone"]
        )
        assert reply[0] == b"OK"
        assert command(port, "ZSCORE", pending, "t-gone") is None
        return seen

    async with asyncio.timeout(30):
        seen = await asyncio.gather(*(on(port, ns) for port, ns in shards.items()))
    for scripts in seen:
        assert sorted(scripts) == sorted(SCRIPT_NAMES), "the scenario runs every script"
    for port, namespace in shards.items():
        assert command(port, "EXISTS", Keys(namespace).meta) == 1, f"{namespace} lives on port {port}"
        assert command_calls(port, "evalsha") > evalsha_before[port], f"scripts ran on port {port}"


async def test_wait_runs_on_the_master_of_the_namespace(cluster: ClusterTopology, opened: list[Any]) -> None:
    by_port = masters(cluster)
    for port, namespace in namespaces_on_every_master(cluster, "wait-routing").items():
        store = await RedisAggregatorStore.open(
            storage_config(namespace, cluster_redis(cluster, "replicated"))
        )
        opened.append(store)
        waits = {p: command_calls(p, "wait") for p in by_port}
        assert await store.save_task(make_task("t1")) is True  # confirmed: its replica acknowledged it
        after = {p: command_calls(p, "wait") for p in by_port}
        assert {p: after[p] - waits[p] for p in by_port} == {p: int(p == port) for p in by_port}


async def test_durability_check_asks_every_primary(cluster: ClusterTopology) -> None:
    by_port = masters(cluster)
    names = [f"127.0.0.1:{port}" for port in sorted(by_port)]
    strict = {"strict": True}

    with pytest.raises(DurabilityError) as refused:
        await RedisAggregatorStore.open(
            storage_config("check", cluster_redis(cluster, "replicated", replicas=2, **strict))
        )
    for name in names:
        assert f"{name}: 1 replica(s) connected, 2 required" in str(refused.value)

    evicting = min(by_port)
    command(evicting, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(DurabilityError) as refused:
            await RedisAggregatorStore.open(storage_config("check", cluster_redis(cluster, "aof", **strict)))
        message = str(refused.value)
        assert f"127.0.0.1:{evicting}: maxmemory-policy is allkeys-lru" in message
        assert message.count("maxmemory-policy is") == 1, "only the evicting primary is named"
    finally:
        command(evicting, "CONFIG", "SET", "maxmemory-policy", "noeviction")

    for durability in ("aof", "replicated"):
        store = await RedisAggregatorStore.open(
            storage_config("check", cluster_redis(cluster, durability, **strict))
        )
        await store.close()


async def test_an_unreachable_cluster_is_unavailable_not_a_redis_error() -> None:
    nowhere = f"127.0.0.1:{find_free_port()}"
    cfg = storage_config("nowhere", {"cluster": {"nodes": [nowhere]}, "retry": {"attempts": 2}})
    with pytest.raises(StoreUnavailableError, match="Redis Cluster cannot be connected"):
        await RedisAggregatorStore.open(cfg)


@pytest.mark.parametrize("durability", ["none", "replicated"])
async def test_scripts_flushed_from_every_primary_are_loaded_again(
    cluster: ClusterTopology, opened: list[Any], durability: str
) -> None:
    shards = namespaces_on_every_master(cluster, f"flush-{durability}")
    stores = []
    for namespace in shards.values():
        store = await RedisAggregatorStore.open(storage_config(namespace, cluster_redis(cluster, durability)))
        opened.append(store)
        stores.append(store)
    for port in masters(cluster):
        assert command(port, "SCRIPT", "FLUSH") == "OK"
    for store in stores:
        assert await store.save_task(make_task("t1")) is True
        (claimed,) = await store.claim_tasks("w", limit=1, lease_s=30)
        await store.complete_task("t1", claimed.token)
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED


async def test_stores_ride_through_the_failover_of_a_shard_master(
    cluster: ClusterTopology, opened: list[Any]
) -> None:
    """SIGKILL of the master of a namespace's shard under replicated load.

    The stores' pipelines (EVALSHA + WAIT, batch reads) must rediscover the slot
    map once the shard's replica took over; redis-py does that by itself only for
    single commands. The promoted replica has no replica of its own: until the
    old master is back (restarted here as soon as the failover is done; it
    rejoins as a replica) every write is applied but unconfirmed, a
    DurabilityError, recorded as an unknown outcome.
    """
    shards = namespaces_on_every_master(cluster, "failover")
    victim_port, namespace = next(iter(shards.items()))
    victim = masters(cluster)[victim_port]
    cfg = storage_config(
        namespace,
        cluster_redis(cluster, "replicated"),  # the default retry budget rides through the failover
    )
    a = await RedisAggregatorStore.open(cfg)
    b = await RedisAggregatorStore.open(cfg)
    opened.extend((a, b))
    ledger = Ledger()
    stop = asyncio.Event()
    async with asyncio.timeout(60), asyncio.TaskGroup() as load:
        for i, store in enumerate((a, b)):
            load.create_task(produce(store, f"p{i}", ledger, stop))
            load.create_task(work(store, f"w{i}", ledger, stop))
        await wait_until("load under way", lambda: len(ledger.completed) >= 50, 20)
        t_kill = time.monotonic()
        await asyncio.to_thread(victim.kill)
        await asyncio.to_thread(cluster.wait_for_failover, victim, CLUSTER_RESUME_BOUND_S)
        failover_s = time.monotonic() - t_kill
        await asyncio.to_thread(cluster.restart, victim)
        await wait_until(
            f"writes resuming within {CLUSTER_RESUME_BOUND_S} s of the kill",
            lambda: len(ledger.acks_started_after(t_kill)) >= 20,
            CLUSTER_RESUME_BOUND_S - (time.monotonic() - t_kill),
        )
        resume_s = min(end for _, end in ledger.acks_started_after(t_kill)) - t_kill
        completed_then = len(ledger.completed)
        await wait_until("load after the failover", lambda: len(ledger.completed) >= completed_then + 50, 20)
        stop.set()

    counts = await a.count_tasks()  # a pipeline, after the slot map changed
    assert cluster.node_for_key(Keys(namespace).meta).port != victim_port, "its replica took over"
    assert sum(counts.values()) >= len(ledger.saved)
    for task_id in sorted(ledger.saved):
        await a.get_task(task_id)
    for task_id in sorted(ledger.completed):
        assert (await b.get_task(task_id)).status == TaskStatus.COMPLETED
    await asyncio.to_thread(cluster.wait_ok, 20)
    print(
        f"\ncluster failover: master on port {victim_port} SIGKILLed; the cluster promoted its replica "
        f"after {failover_s:.2f} s; writes resumed (old master restarted as a replica) after "
        f"{resume_s:.2f} s (bound {CLUSTER_RESUME_BOUND_S} s); acknowledged {len(ledger.saved)} saves, "
        f"{len(ledger.completed)} completions; unknown outcomes: {len(ledger.unknown)} "
        f"{sorted(set(ledger.unknown))}"
    )
    unavailable = [what for what, kind in ledger.unknown if kind == "StoreUnavailableError"]
    assert unavailable == [], "the default retry budget rides through a failover"
