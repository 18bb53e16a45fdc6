"""Sentinel failover under load, on real processes: a master, two replicas, three sentinels.

Two aggregator stores (``durability: replicated``, one replica acknowledgement)
save, claim and complete tasks from several coroutines while the master gets
SIGKILL. The stores have the default retry policy, whose budget outlasts the
failover: no call ends in StoreUnavailableError. The load records the
unknown-outcome errors (DurabilityError, StoreUnavailableError) and never counts
them as acknowledged. Afterwards every acknowledged save and completion is on the
new master; work resumed within RESUME_BOUND_S; the old master, restarted on
its folder, is never what the stores talk to and rejoins as a replica within
REJOIN_BOUND_S. The new master starts with an empty script cache: the load
going on proves the NOSCRIPT reload (its NOSCRIPT error count is checked).
The same load also rides through a failover with the sentinels timed as the
shipped docker/sentinel.conf has them (down-after-milliseconds 5000).

Every process runs the shipped files' access control, with passwords generated
for the run (``redis_secrets``): the stores log in as ``ponos`` (and to the
sentinels with their password), replicas as ``ponos-replication``, the
sentinels to the data nodes as ``ponos-sentinel``; so a failover is also shown
to work with nothing more than those users' rights.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from _ha_support import Ledger, error_count, make_task, needs, produce, storage_config, wait_until, work
from redis.backoff import NoBackoff
from redis.retry import Retry

from ponos_redis import TaskStatus, open_aggregator_store
from ponos_redis._acl import SENTINEL_PASSWORD_ENV
from ponos_redis._redis_server import RedisServer, auth_for_port
from ponos_redis._topology import SentinelTopology, command, docker_conf, role
from ponos_redis.keys import Keys

pytestmark = [
    pytest.mark.redis_only,
    pytest.mark.timeout(120),
    needs("redis-server", "redis-sentinel"),
]

# Writes resume within this bound after SIGKILL of the master (measured here: ~2.5-4 s;
# down-after-milliseconds is 1000).
RESUME_BOUND_S = 15.0
# The restarted old master says ROLE slave within this bound (Sentinel waits ~8 s, plus
# up to one 10 s INFO period, before it reconfigures a master that came back).
REJOIN_BOUND_S = 30.0
HEALTHY_BOUND_S = 40.0
# With the shipped timings (down-after-milliseconds 5000) writes resume within this bound.
SHIPPED_RESUME_BOUND_S = 20.0
# Refusals are answers, not outages: a client that does not try again.
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture(scope="module")
def topology(redis_secrets: dict[str, str]) -> Iterator[SentinelTopology]:
    with SentinelTopology(
        replicas=2, sentinels=3, down_after_ms=1000, failover_timeout_ms=5000, secrets=redis_secrets
    ) as topo:
        yield topo


@pytest.fixture
def healthy(topology: SentinelTopology) -> SentinelTopology:
    """The shared topology, all processes up and the sentinels agreeing (a test that
    failed half-way may have left a node down)."""
    for node in [*topology.nodes, *topology.sentinels]:
        if not node.running:
            topology.restart(node)
    topology.wait_healthy(timeout=HEALTHY_BOUND_S)
    return topology


def replicated(topology: SentinelTopology, namespace: str) -> dict[str, object]:
    return {
        **topology.redis_settings(),  # the sentinels, as user ponos with the passwords' variables
        "durability": "replicated",
        "replicas": 1,
        "wait_timeout_ms": 1000,
        # Everything else as a user gets it: the default retry budget rides through a failover.
    }


async def test_store_opened_through_the_password_protected_sentinels_works(
    healthy: SentinelTopology, redis_namespace: str
) -> None:
    url = healthy.url
    assert url.startswith("redis+sentinel://127.0.0.1:")
    assert url.endswith("/ponos")
    settings = healthy.redis_settings()
    assert settings["username"] == "ponos"
    assert settings["sentinel"]["sentinel_password_env"] == "PONOS_SENTINEL_PASSWORD"
    cfg = storage_config(
        redis_namespace, {**settings, "durability": "replicated", "replicas": 1, "strict": True}
    )
    async with open_aggregator_store(cfg) as store:
        assert await store.save_task(make_task("via-sentinels"))
        (claimed,) = await store.claim_tasks("w", limit=1, lease_s=30)
        await store.complete_task("via-sentinels", claimed.token)
        assert (await store.get_task("via-sentinels")).status == TaskStatus.COMPLETED
    master = healthy.master()
    key = Keys(redis_namespace).task("via-sentinels")
    assert command(master.port, "HGET", key, "status") == "completed", "written to the sentinels' master"


def test_the_sentinels_and_the_data_nodes_refuse_a_client_without_a_password(
    healthy: SentinelTopology, redis_secrets: dict[str, str]
) -> None:
    """A client that does not log in cannot ask a sentinel anything, nor point it at a master
    of its own; the wrong password is refused; with the sentinels' password it may ask."""
    sentinel = healthy.sentinels[0]
    for password in (None, "not-the-password"):
        client = redis.Redis(
            port=sentinel.port, password=password, protocol=2, socket_timeout=5, retry=NO_RETRY
        )
        try:
            for args in (
                ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", healthy.service),
                ("SENTINEL", "MONITOR", "spoofed", "127.0.0.1", "1", "1"),
                ("SENTINEL", "FAILOVER", healthy.service),
            ):
                with pytest.raises(redis.AuthenticationError):
                    client.execute_command(*args)
        finally:
            client.close()
    allowed = command(
        sentinel.port,
        "SENTINEL",
        "GET-MASTER-ADDR-BY-NAME",
        healthy.service,
        auth=(None, redis_secrets[SENTINEL_PASSWORD_ENV]),
    )
    assert int(allowed[1]) == healthy.master().port
    assert "spoofed" not in str(command(sentinel.port, "SENTINEL", "MASTERS"))
    anonymous = redis.Redis(port=healthy.master().port, protocol=2, socket_timeout=5, retry=NO_RETRY)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.execute_command("REPLICAOF", "127.0.0.1", "1")
    finally:
        anonymous.close()


async def _statuses(port: int, keys: Keys, ids: set[str]) -> dict[str, str | None]:
    """Each task's status as the server on ``port`` has it (one pipeline, behind the stores' back)."""
    username, password = auth_for_port(port) or (None, None)
    client = aioredis.Redis(
        host="127.0.0.1",
        port=port,
        username=username,
        password=password,
        socket_timeout=5,
        decode_responses=True,
    )
    try:
        ordered = sorted(ids)
        pipe = client.pipeline(transaction=False)
        for task_id in ordered:
            pipe.hget(keys.task(task_id), "status")
        return dict(zip(ordered, await pipe.execute(), strict=True))
    finally:
        await client.aclose()


async def test_failover_under_load_loses_no_acknowledged_write(
    healthy: SentinelTopology, redis_namespace: str
) -> None:
    topo = healthy
    keys = Keys(redis_namespace)
    cfg = storage_config(redis_namespace, replicated(topo, redis_namespace))
    ledger = Ledger()
    stop = asyncio.Event()
    old = topo.master()
    noscript_before = {n.port: error_count(n.port, "NOSCRIPT") for n in topo.nodes}

    async with open_aggregator_store(cfg) as a, open_aggregator_store(cfg) as b:
        async with asyncio.timeout(90), asyncio.TaskGroup() as load:
            for i, store in enumerate((a, b)):
                load.create_task(produce(store, f"p{i}", ledger, stop))
                for w in range(2):
                    load.create_task(work(store, f"worker-{i}-{w}", ledger, stop))

            await wait_until("load under way", lambda: len(ledger.completed) >= 100, 20)
            t_kill = time.monotonic()
            await asyncio.to_thread(old.kill)
            completed_at_kill = len(ledger.completed)

            new = await asyncio.to_thread(topo.wait_for_failover, old, RESUME_BOUND_S)
            failover_s = time.monotonic() - t_kill
            # Restart the old master at once, on its folder: for a while it is a master
            # again, with its stale data, and no store may be sent to it.
            await asyncio.to_thread(topo.restart, old)
            t_restart = time.monotonic()

            await wait_until(
                f"writes resuming within {RESUME_BOUND_S} s of the kill",
                lambda: len(ledger.acks_started_after(t_kill)) >= 20,
                RESUME_BOUND_S - (time.monotonic() - t_kill),
            )
            resume_s = min(end for _, end in ledger.acks_started_after(t_kill)) - t_kill
            await wait_until(
                "load after the failover", lambda: len(ledger.completed) >= completed_at_kill + 100, 20
            )

            # Stale state never reaches a store: written now, seen by both stores, and
            # absent from the old master while it still plays master.
            assert await asyncio.to_thread(topo.master_port) == new.port
            for store in (a, b):  # where the stores' master_for pools send their connections
                assert store._client.connection_pool.master_address[1] == new.port
            await a.save_task(make_task("after-failover"))
            # (the workers may already have claimed it)
            assert (await b.get_task("after-failover")).task.task_id == "after-failover"
            old_role = role(old)
            if old_role == "master":
                assert command(old.port, "EXISTS", keys.task("after-failover")) == 0
            stop.set()

        # Everything acknowledged is on the new master.
        assert ledger.saved
        assert ledger.completed
        saved = await _statuses(new.port, keys, ledger.saved)
        assert [t for t, s in saved.items() if s is None] == [], "acknowledged saves lost"
        done = await _statuses(new.port, keys, ledger.completed)
        assert {t for t, s in done.items() if s != "completed"} == set(), "acknowledged completions lost"
        for task_id in sorted(ledger.completed)[:20]:  # and through a store
            assert (await b.get_task(task_id)).status == TaskStatus.COMPLETED
        # The promoted replica had no scripts: EVALSHA got NOSCRIPT there and the stores reloaded.
        assert error_count(new.port, "NOSCRIPT") > noscript_before[new.port]

    rejoin_s = await asyncio.to_thread(_wait_rejoined, topo, old, t_restart)
    assert command(old.port, "EXISTS", keys.task("after-failover")) == 1, "the old master resynced"
    # The shipped users' rights were enough for all of it: the stores (ponos), the
    # replication (ponos-replication) and the sentinels' promotion and reconfiguration
    # (ponos-sentinel) were refused nothing on the data nodes (the old master's log
    # started again at its restart, before it was reconfigured as a replica).
    for node in topo.nodes:
        assert command(node.port, "ACL", "LOG") == [], f"a refusal on port {node.port}"
    print(
        f"\nsentinel failover: master SIGKILLed on port {old.port}; sentinels named port {new.port} "
        f"after {failover_s:.2f} s; writes resumed after {resume_s:.2f} s (bound {RESUME_BOUND_S} s); "
        f"old master was {old_role} right after its restart and said ROLE slave {rejoin_s:.1f} s "
        f"after it (bound {REJOIN_BOUND_S} s); acknowledged: {len(ledger.saved)} saves, "
        f"{len(ledger.completed)} completions; unknown outcomes: {len(ledger.unknown)} "
        f"{sorted(set(ledger.unknown))}"
    )
    unavailable = [what for what, kind in ledger.unknown if kind == "StoreUnavailableError"]
    assert unavailable == [], "the default retry budget rides through a failover"


def _shipped_sentinel_timings() -> tuple[int, int]:
    """down-after-milliseconds and failover-timeout as docker/sentinel.conf has them."""
    text = docker_conf("sentinel.conf").read_text(encoding="utf-8")
    down = re.search(r"^sentinel down-after-milliseconds \S+ (\d+)", text, re.MULTILINE)
    failover = re.search(r"^sentinel failover-timeout \S+ (\d+)", text, re.MULTILINE)
    assert down is not None, "docker/sentinel.conf sets down-after-milliseconds"
    assert failover is not None, "docker/sentinel.conf sets failover-timeout"
    return int(down[1]), int(failover[1])


async def test_failover_with_the_shipped_sentinel_timings(
    redis_namespace: str, redis_secrets: dict[str, str]
) -> None:
    """SIGKILL of the master under load, the sentinels timed as shipped: the default retry
    budget still outlasts the failover (no StoreUnavailableError) and writes resume."""
    down_after_ms, failover_timeout_ms = _shipped_sentinel_timings()
    with SentinelTopology(
        replicas=2,
        sentinels=3,
        down_after_ms=down_after_ms,
        failover_timeout_ms=failover_timeout_ms,
        secrets=redis_secrets,
    ) as topo:
        cfg = storage_config(redis_namespace, replicated(topo, redis_namespace))
        ledger = Ledger()
        stop = asyncio.Event()
        old = topo.master()
        async with open_aggregator_store(cfg) as a, open_aggregator_store(cfg) as b:
            async with asyncio.timeout(90), asyncio.TaskGroup() as load:
                for i, store in enumerate((a, b)):
                    load.create_task(produce(store, f"p{i}", ledger, stop))
                    load.create_task(work(store, f"worker-{i}", ledger, stop))
                await wait_until("load under way", lambda: len(ledger.completed) >= 100, 20)
                t_kill = time.monotonic()
                await asyncio.to_thread(old.kill)
                new = await asyncio.to_thread(topo.wait_for_failover, old, SHIPPED_RESUME_BOUND_S)
                failover_s = time.monotonic() - t_kill
                await wait_until(
                    f"writes resuming within {SHIPPED_RESUME_BOUND_S} s of the kill",
                    lambda: len(ledger.acks_started_after(t_kill)) >= 20,
                    SHIPPED_RESUME_BOUND_S - (time.monotonic() - t_kill),
                )
                resume_s = min(end for _, end in ledger.acks_started_after(t_kill)) - t_kill
                stop.set()
            assert (await b.get_task(sorted(ledger.saved)[-1])).task.task_id
    print(
        f"\nsentinel failover, shipped timings (down-after {down_after_ms} ms, failover-timeout "
        f"{failover_timeout_ms} ms): sentinels named port {new.port} after {failover_s:.2f} s; writes "
        f"resumed after {resume_s:.2f} s (bound {SHIPPED_RESUME_BOUND_S} s); acknowledged: "
        f"{len(ledger.saved)} saves, {len(ledger.completed)} completions; unknown outcomes: "
        f"{len(ledger.unknown)} {sorted(set(ledger.unknown))}"
    )
    unavailable = [what for what, kind in ledger.unknown if kind == "StoreUnavailableError"]
    assert unavailable == [], "the default retry budget rides through a failover"


def _wait_rejoined(topo: SentinelTopology, old: RedisServer, t_restart: float) -> float:
    """Seconds from the restart until the old master says ROLE slave (then its link is up too)."""
    topo.wait_role(old, "slave", REJOIN_BOUND_S - (time.monotonic() - t_restart))
    rejoined = time.monotonic() - t_restart
    assert topo.group is not None
    topo.group.wait_link_up(old, timeout=HEALTHY_BOUND_S)
    return rejoined
