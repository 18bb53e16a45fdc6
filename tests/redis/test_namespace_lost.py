"""Tokens never repeat for a namespace, whatever Redis lost (lesson 18).

A server that comes back without its data (no AOF, an operator's FLUSHDB) is met
by stores that were already open: every writing call refuses with
NamespaceLostError and changes nothing. A store opened afterwards starts a new
epoch, whose tokens are above every token of the old one, so a stale holder can
never complete a task another replica was given. Run with the default config
(durability aof, strict false: the throwaway server without AOF is only warned
about, as a user would see it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from _redis_support import make_task

from ponos_redis import (
    ManualClock,
    NamespaceLostError,
    StaleLeaseError,
    StorageConfig,
    TaskStatus,
)
from ponos_redis._redis_server import RedisServer
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.testing import make_performer

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A private server that keeps nothing on disk (save "", appendonly no)."""
    with RedisServer() as srv:
        yield srv


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url, socket_timeout=5)
    await client.flushall()
    yield client
    await client.aclose()


def _config(server: RedisServer, **top: object) -> StorageConfig:
    return StorageConfig.from_dict({"namespace": "ns", "redis": {"url": server.url}, **top})


async def _open(server: RedisServer, **options: object) -> RedisAggregatorStore:
    clock = options.pop("clock", None)
    return await RedisAggregatorStore.open(_config(server, **options), clock=clock)  # type: ignore[arg-type]


async def test_flushdb_under_open_stores_stops_every_write(server: RedisServer, raw: aioredis.Redis) -> None:
    holder = await _open(server)
    executor = await RedisExecutorStore.open(_config(server))
    try:
        await holder.save_task(make_task("x"))
        [claimed] = await holder.claim_tasks("replica-a", limit=1, lease_s=60)
        await raw.flushdb()

        writes = [
            holder.complete_task("x", claimed.token),
            holder.save_task(make_task("y")),
            holder.claim_tasks("replica-a", limit=1, lease_s=60),
            holder.reap_expired_leases(),
            holder.set_last_processed_block(1, 5),
            holder.acquire_chain_lease(1, "poller", ttl_s=10),
            holder.fail_orphaned_tasks(1, 0),
            holder.try_runner_lease("reaper", "replica-a", ttl_s=10),
            executor.mark_task_processed("x"),
            executor.save_performer_state(make_performer("p")),
        ]
        for call in writes:
            with pytest.raises(NamespaceLostError, match="not the one this store opened"):
                await call
        assert await raw.dbsize() == 0  # nothing was written
    finally:
        await holder.close()
        await executor.close()


async def test_a_new_epoch_never_repeats_a_token_of_the_old_one(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    holder = await _open(server)
    try:
        await holder.save_task(make_task("x"))
        [stale] = await holder.claim_tasks("replica-a", limit=1, lease_s=60)
        await raw.flushdb()

        # Another replica opens the namespace afresh (a new epoch), sees task x again
        # (re-read from the chain) and claims it.
        fresh = await _open(server)
        try:
            await fresh.save_task(make_task("x"))
            [again] = await fresh.claim_tasks("replica-b", limit=1, lease_s=60)
            assert again.token > stale.token

            with pytest.raises(NamespaceLostError):
                await holder.complete_task("x", stale.token)
            # Even through a store of the new epoch, the old token is not current.
            with pytest.raises(StaleLeaseError):
                await fresh.complete_task("x", stale.token)
            await fresh.complete_task("x", again.token)
            record = await fresh.get_task("x")
            assert record.status is TaskStatus.COMPLETED
            assert record.owner == "replica-b"
        finally:
            await fresh.close()
    finally:
        await holder.close()


async def test_a_restart_without_data_stops_the_open_stores(server: RedisServer, raw: aioredis.Redis) -> None:
    holder = await _open(server)
    try:
        await holder.save_task(make_task("x"))
        [stale] = await holder.claim_tasks("replica-a", limit=1, lease_s=60)
        server.kill()
        server.restart()  # nothing on disk: it comes back empty
        with pytest.raises(NamespaceLostError):
            await holder.complete_task("x", stale.token)
        fresh = await _open(server)
        try:
            await fresh.save_task(make_task("x"))
            [again] = await fresh.claim_tasks("replica-b", limit=1, lease_s=60)
            assert again.token > stale.token
        finally:
            await fresh.close()
    finally:
        await holder.close()


async def test_a_rolled_back_fence_counter_still_gives_greater_tokens(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    """A failover to a replica that lagged keeps the namespace (same epoch) but may lose
    the last increments of the fence counter: tokens stay above the clock in
    microseconds, so after the seconds a failover takes they are above the old ones."""
    clock = ManualClock()
    store = await _open(server, clock=clock)
    try:
        await store.save_tasks([make_task("x"), make_task("y")])
        [first] = await store.claim_tasks("replica-a", limit=1, lease_s=60)
        await raw.set(store.keys.fence, "0")
        clock.advance(2)
        [second] = await store.claim_tasks("replica-b", limit=1, lease_s=60)
        assert second.token > first.token
        lease = await store.acquire_chain_lease(1, "poller", ttl_s=10)
        assert lease is not None
        assert lease.token > second.token
    finally:
        await store.close()


async def test_a_namespace_that_must_exist_is_not_created_by_opening(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    with pytest.raises(NamespaceLostError, match="does not exist"):
        await _open(server, create_namespace=False)
    assert await raw.dbsize() == 0
    created = await _open(server)
    await created.close()
    again = await _open(server, create_namespace=False)
    await again.close()
    assert await raw.hget(created.keys.meta, "epoch") is not None
