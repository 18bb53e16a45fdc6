"""Fixtures of the Redis-only tests: stores on the session's private server
(``redis_url``), one fresh namespace per test, and a raw client to look at
the keys behind the store's back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from _redis_support import Stores


@pytest.fixture
async def stores(redis_url: str, redis_namespace: str) -> AsyncIterator[Stores]:
    opened = Stores(redis_url, redis_namespace)
    yield opened
    await opened.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client on the same server (bytes replies)."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    await client.aclose()
