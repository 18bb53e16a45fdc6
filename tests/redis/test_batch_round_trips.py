"""Batch calls cost a bounded number of round trips, whatever their size.

Two independent counts: the server's ``INFO commandstats`` deltas (what ran
on the server) and the writes the store's client makes to its socket (one per
round trip: a pipeline is packed into one write). The private session server
has no other client while a test runs; the counts are only taken around one
store call at a time, after a warm-up that connected and loaded the scripts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from _redis_support import Stores, make_task, make_tasks
from redis.asyncio.connection import AbstractConnection

from ponos_redis import TaskStatus
from ponos_redis.backends.redis import RedisAggregatorStore

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(30)]

N = 100


class Sends:
    """Counts socket writes (round trips) per connection."""

    def __init__(self) -> None:
        self.counting = False
        self.by_connection: dict[int, int] = {}

    @property
    def total(self) -> int:
        return sum(self.by_connection.values())


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Sends:
    counter = Sends()
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if counter.counting:
            counter.by_connection[id(self)] = counter.by_connection.get(id(self), 0) + 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return counter


@pytest.fixture
async def store(stores: Stores) -> RedisAggregatorStore:
    s = await stores.aggregator()
    # Warm-up: connect, and load every script this test measures (EVALSHA, then NOSCRIPT -> load).
    await s.save_tasks([make_task("warm-up")])
    [claimed] = await s.claim_tasks("warm-up", limit=1, lease_s=30)
    await s.complete_task("warm-up", claimed.token)
    await s.list_pending_tasks(limit=1)
    await s.count_tasks()
    return s


async def commandstats(raw: aioredis.Redis) -> dict[str, int]:
    info = await raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


async def measure(
    raw: aioredis.Redis, sends: Sends, call: Callable[[], Awaitable[Any]]
) -> tuple[Any, dict[str, int], int]:
    """Run ``call``; its result, the commands the server ran for it, and its round trips."""
    before = await commandstats(raw)
    sends.by_connection.clear()
    sends.counting = True
    try:
        result = await call()
    finally:
        sends.counting = False
    after = await commandstats(raw)
    # A command is counted once it has run: the INFO that read `before` shows in `after`.
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta["info"] -= 1
    return result, {k: v for k, v in delta.items() if v}, sends.total


async def test_save_tasks_is_one_script_call(
    store: RedisAggregatorStore, raw: aioredis.Redis, sends: Sends
) -> None:
    created, delta, trips = await measure(raw, sends, lambda: store.save_tasks(make_tasks(N)))
    assert created == N
    assert delta.get("evalsha") == 1, delta
    assert "eval" not in delta, delta
    assert trips == 1


async def test_claim_tasks_is_one_script_call(
    store: RedisAggregatorStore, raw: aioredis.Redis, sends: Sends
) -> None:
    await store.save_tasks(make_tasks(N))
    claimed, delta, trips = await measure(
        raw, sends, lambda: store.claim_tasks("replica-a", limit=50, lease_s=30)
    )
    assert len(claimed) == 50
    assert delta.get("evalsha") == 1, delta
    assert trips == 1


async def test_list_pending_tasks_is_the_index_then_one_pipeline(
    store: RedisAggregatorStore, raw: aioredis.Redis, sends: Sends
) -> None:
    await store.save_tasks(make_tasks(N))
    listed, delta, trips = await measure(raw, sends, lambda: store.list_pending_tasks(limit=50))
    assert [t.task_id for t in listed] == [f"task-{i:04d}" for i in range(50)]
    assert delta.get("zrange") == 1, delta
    assert delta.get("hgetall") == 50, delta
    assert trips == 2, "one ZRANGE, then every HGETALL in one pipeline"


async def test_listing_all_pending_tasks_of_an_avs(
    store: RedisAggregatorStore, raw: aioredis.Redis, sends: Sends
) -> None:
    await store.save_tasks(make_tasks(N))
    listed, delta, trips = await measure(
        raw, sends, lambda: store.list_pending_tasks(make_task().avs_address)
    )
    assert len(listed) == N
    assert delta.get("zrange") == 1, delta
    assert delta.get("hgetall") == N, delta
    assert trips == 2


async def test_count_tasks_is_one_pipeline(
    store: RedisAggregatorStore, raw: aioredis.Redis, sends: Sends
) -> None:
    await store.save_tasks(make_tasks(N))
    counts, delta, trips = await measure(raw, sends, store.count_tasks)
    assert counts[TaskStatus.PENDING] == N
    assert delta.get("zcard") == len(TaskStatus), delta
    assert trips == 1
