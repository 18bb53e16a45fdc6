"""``durability: replicated`` on a master with two replicas (no sentinels needed).

Asking for more acknowledgements than there are replicas: the write is applied
on the master (and reaches the replicas there are), WAIT gives up after
``wait_timeout_ms`` and the call raises DurabilityError saying so, without
retrying the write; ``strict: true`` refuses to open at all. The nodes run the
shipped access control (passwords generated for the run); the stores log in as
``ponos``, the replicas as ``ponos-replication``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from _ha_support import command_calls, make_task, needs, storage_config

from ponos_redis import DurabilityError, TaskStatus
from ponos_redis._acl import APP_PASSWORD_ENV, APP_USER
from ponos_redis._redis_server import auth_for_port
from ponos_redis._topology import ReplicaGroup, command
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.keys import Keys

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60), needs("redis-server")]

WAIT_MS = 300


@pytest.fixture(scope="module")
def group(redis_secrets: dict[str, str]) -> Iterator[ReplicaGroup]:
    with ReplicaGroup(replicas=2, secrets=redis_secrets) as g:
        yield g


def wait_acknowledging(group: ReplicaGroup) -> None:
    """Until every replica acknowledges a write (WAIT on the connection that wrote it): just
    after a sync a replica sometimes takes up to a second to send its first acknowledgement."""
    for replica in group.nodes[1:]:
        group.wait_link_up(replica, timeout=20)
    username, password = auth_for_port(group.master.port) or (None, None)
    client = redis.Redis(
        host="127.0.0.1", port=group.master.port, username=username, password=password, socket_timeout=10
    )
    try:
        client.set("ha:probe", "1")
        replicas = len(group.nodes) - 1
        assert client.wait(replicas, 5000) == replicas, "every replica acknowledges writes"
    finally:
        client.close()


@pytest.fixture
def linked(group: ReplicaGroup) -> ReplicaGroup:
    """The shared group with both replicas running, linked and acknowledging writes."""
    for replica in group.nodes[1:]:
        if not replica.running:
            replica.start()
    wait_acknowledging(group)
    return group


def replicated(group: ReplicaGroup, replicas: int, *, strict: bool = False) -> dict[str, object]:
    return {
        **group.redis_settings(),  # the master, as user ponos
        "durability": "replicated",
        "replicas": replicas,
        "wait_timeout_ms": WAIT_MS,
        "strict": strict,
    }


async def test_too_few_replicas_raise_durability_error_after_the_write(
    linked: ReplicaGroup, redis_namespace: str
) -> None:
    master = linked.master
    keys = Keys(redis_namespace)
    store = await RedisAggregatorStore.open(storage_config(redis_namespace, replicated(linked, 3)))
    try:
        waits = command_calls(master.port, "wait")
        started = time.monotonic()
        with pytest.raises(DurabilityError) as raised:
            await store.save_task(make_task("t1"))
        elapsed = time.monotonic() - started
        message = str(raised.value)
        assert "applied on the master" in message
        assert f"only 2 of 3 replica(s) acknowledged it within {WAIT_MS} ms" in message
        # One WAIT of wait_timeout_ms, and no retry: a DurabilityError is not transient.
        assert command_calls(master.port, "wait") == waits + 1
        # The write is there, on the master and on both replicas.
        assert (await store.get_task("t1")).status == TaskStatus.PENDING
        for node in linked.nodes:
            assert command(node.port, "EXISTS", keys.task("t1")) == 1

        # Every writing script takes the same path: a claim too.
        with pytest.raises(DurabilityError, match="claim: applied on the master"):
            await store.claim_tasks("w", limit=1, lease_s=30)
        assert (await store.get_task("t1")).status == TaskStatus.PROCESSING
        print(f"\nDurabilityError raised {elapsed * 1000:.0f} ms after the call (wait_timeout_ms {WAIT_MS})")
    finally:
        await store.close()


async def test_enough_replicas_confirm_every_write(linked: ReplicaGroup, redis_namespace: str) -> None:
    cfg = storage_config(redis_namespace, replicated(linked, 2, strict=True))
    async with await RedisAggregatorStore.open(cfg) as agg, await RedisExecutorStore.open(cfg) as exe:
        assert await agg.save_task(make_task("t1"))
        (claimed,) = await agg.claim_tasks("w", limit=1, lease_s=30)
        await agg.complete_task("t1", claimed.token)
        assert await exe.mark_task_processed("t1") is True


async def test_replicated_is_confirmed_without_config_get(
    linked: ReplicaGroup, redis_namespace: str, redis_secrets: dict[str, str]
) -> None:
    """The alternative to granting the library's user CONFIG GET (which also shows
    masterauth): ``durability: replicated`` is checked with INFO (AOF on, noeviction,
    connected replicas) and each write's WAIT, so a user without CONFIG GET opens with
    ``strict: true``, while ``aof`` cannot be confirmed (INFO does not report appendfsync)."""
    master = linked.master
    name = "ponos-without-config-get"
    reply = command(master.port, "ACL", "GETUSER", APP_USER)
    rules = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    assert "+config|get" in rules["commands"]
    password = redis_secrets[APP_PASSWORD_ENV]
    commands = rules["commands"].replace("+config|get", "").split()
    command(master.port, "ACL", "SETUSER", name, "reset", "on", f">{password}", "~ponos:{*}:*", *commands)
    try:
        cfg = replicated(linked, 2, strict=True) | {"username": name}
        async with await RedisAggregatorStore.open(storage_config(redis_namespace, cfg)) as store:
            assert await store.save_task(make_task("t1")) is True  # both replicas acknowledged it
        with pytest.raises(DurabilityError, match="appendfsync is unknown"):
            await RedisAggregatorStore.open(storage_config(redis_namespace, cfg | {"durability": "aof"}))
        assert command(master.port, "ACL", "DRYRUN", name, "CONFIG", "GET", "masterauth") != "OK"
    finally:
        command(master.port, "ACL", "DELUSER", name)


async def test_strict_open_refuses_with_fewer_connected_replicas_than_required(
    linked: ReplicaGroup, redis_namespace: str
) -> None:
    with pytest.raises(DurabilityError, match=r"2 replica\(s\) connected, 3 required"):
        await RedisAggregatorStore.open(storage_config(redis_namespace, replicated(linked, 3, strict=True)))


async def test_a_lost_replica_is_noticed_by_writes_and_by_open(
    linked: ReplicaGroup, redis_namespace: str
) -> None:
    cfg = storage_config(redis_namespace, replicated(linked, 2, strict=True))
    store = await RedisAggregatorStore.open(cfg)
    try:
        assert await store.save_task(make_task("before"))
        linked.nodes[2].kill()
        with pytest.raises(DurabilityError, match="only 1 of 2 replica"):
            await store.save_task(make_task("after"))
        with pytest.raises(DurabilityError, match=r"1 replica\(s\) connected, 2 required"):
            await RedisAggregatorStore.open(cfg)
        linked.nodes[2].start()
        wait_acknowledging(linked)
        assert await store.save_task(make_task("back")) is True
    finally:
        await store.close()
