"""Fixtures of the ops tests: a pair of stores (aggregator, executor) on one
namespace of either backend, fresh per call, all closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from _ops_support import Pair, PairFactory, fresh_namespace, redis_config

from ponos_redis import AggregatorStore, ExecutorStore
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of ``make_pair`` (the contract suite covers the cluster; these, its scripts)."""
    return str(request.param)


@pytest.fixture
async def make_pair(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[PairFactory]:
    """``await make_pair()``: (aggregator, executor) on a fresh namespace (or ``namespace=``)."""
    opened: list[Any] = []

    async def factory(namespace: str | None = None, clock: Any = None) -> Pair:
        ns = namespace or fresh_namespace()
        agg: AggregatorStore
        exe: ExecutorStore
        if backend == "memory":
            agg = MemoryAggregatorStore(ns, clock=clock)
            exe = MemoryExecutorStore(ns, clock=clock)
        else:
            url = request.getfixturevalue("redis_url")
            agg = await RedisAggregatorStore.open(redis_config(url, ns), clock=clock)
            exe = await RedisExecutorStore.open(redis_config(url, ns), clock=clock)
        opened.extend((agg, exe))
        return agg, exe

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    await client.aclose()
