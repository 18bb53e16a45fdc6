"""Without a test clock, leases and timestamps come from the Redis server's
TIME, never from the client's clock (lesson 10)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from _redis_support import TIMEOUT_S, Stores, all_events, make_task

import ponos_redis._clock
from ponos_redis import StaleLeaseError, TaskStatus
from ponos_redis._validate import to_ms

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(30)]

# Generous: two clocks read a few milliseconds apart on one machine.
TOLERANCE_MS = 3000
SKEW_S = 6 * 3600


async def server_ms(raw: aioredis.Redis) -> int:
    seconds, micros = await raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_a_short_lease_is_reaped_once_the_server_clock_passes_it(stores: Stores) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-short"), make_task("t-long")])
    [short] = await store.claim_tasks("replica-a", limit=1, lease_s=0.2)
    [long] = await store.claim_tasks("replica-b", limit=1, lease_s=60)
    assert short.task.task_id == "t-short"

    await asyncio.sleep(0.35)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    reaped = 0
    while reaped == 0:
        reaped = await store.reap_expired_leases()
        if reaped == 0 and loop.time() > deadline:
            pytest.fail("the 0.2 s lease was not reaped")
        await asyncio.sleep(0.05)
    assert reaped == 1

    record = await store.get_task("t-short")
    assert record.status is TaskStatus.PENDING
    assert record.attempts == 1
    assert record.token is not None
    assert record.token > short.token
    with pytest.raises(StaleLeaseError):
        await store.complete_task("t-short", short.token)
    # The 60 s lease is untouched.
    assert (await store.get_task("t-long")).status is TaskStatus.PROCESSING
    await store.complete_task("t-long", long.token)


async def test_a_live_lease_is_not_reaped(stores: Stores) -> None:
    store = await stores.aggregator()
    await store.save_task(make_task("t-1"))
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=60)
    assert await store.reap_expired_leases() == 0
    await store.renew_task_lease("t-1", claimed.token, lease_s=60)
    assert await store.reap_expired_leases() == 0
    assert (await store.get_task("t-1")).owner == "replica-a"


async def test_times_on_records_follow_the_server_clock(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    before = await server_ms(raw)
    await store.save_task(make_task("t-1"))
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=30)
    after = await server_ms(raw)

    record = await store.get_task("t-1")
    assert record.lease_until == claimed.lease_until
    lease_ms = to_ms(claimed.lease_until)
    assert before + 30_000 <= lease_ms <= after + 30_000
    stored = await raw.hget(store.keys.task("t-1"), "lease_until")
    assert stored is not None
    assert int(stored) == lease_ms
    assert before <= to_ms(record.created_at) <= after
    assert before <= to_ms(record.updated_at) <= after
    assert lease_ms == await raw.zscore(store.keys.tasks(TaskStatus.PROCESSING), "t-1")
    for event in await all_events(store):
        assert before <= to_ms(event.at) <= after


async def test_chain_lease_expiry_follows_the_server_clock(stores: Stores, raw: aioredis.Redis) -> None:
    store = await stores.aggregator()
    before = await server_ms(raw)
    lease = await store.acquire_chain_lease(1, "poller", ttl_s=10)
    after = await server_ms(raw)
    assert lease is not None
    assert before + 10_000 <= to_ms(lease.expires_at) <= after + 10_000


async def test_a_skewed_client_clock_changes_nothing(
    stores: Stores, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process's idea of the time is hours off; the store must not notice.

    ``time.time`` and the library's system clock are patched (the monotonic
    clocks asyncio and the retry policy use are not): a backend that read the
    client's wall clock would put every lease hours away from the server's TIME.
    """
    store = await stores.aggregator()
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + SKEW_S)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + SKEW_S * 10**9)
    monkeypatch.setattr(
        ponos_redis._clock, "system_clock", lambda: datetime.now(UTC) + timedelta(seconds=SKEW_S)
    )

    await store.save_task(make_task("t-1"))
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=30)
    now = await server_ms(raw)
    assert abs(to_ms(claimed.lease_until) - (now + 30_000)) < TOLERANCE_MS
    record = await store.get_task("t-1")
    assert abs(to_ms(record.created_at) - now) < TOLERANCE_MS
    # Judged by the server's clock, a 30 s lease is live: nothing to reap.
    assert await store.reap_expired_leases() == 0
    await store.complete_task("t-1", claimed.token)
    assert (await store.get_task("t-1")).status is TaskStatus.COMPLETED
