"""The package's top level exports the whole public API, and stays cheap to import:
the Redis stores (and redis-py with them) load on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ponos_redis
from ponos_redis.backends import redis as redis_backend

ROOT = Path(__file__).resolve().parents[2]


def test_redis_stores_are_exported() -> None:
    from ponos_redis import RedisAggregatorStore, RedisExecutorStore

    assert RedisAggregatorStore is redis_backend.RedisAggregatorStore
    assert RedisExecutorStore is redis_backend.RedisExecutorStore
    assert {"RedisAggregatorStore", "RedisExecutorStore"} <= set(ponos_redis.__all__)
    assert {"RedisAggregatorStore", "RedisExecutorStore"} <= set(dir(ponos_redis))
    for name in ponos_redis.__all__:
        assert getattr(ponos_redis, name) is not None, name
    with pytest.raises(AttributeError, match="NoSuchStore"):
        _ = ponos_redis.NoSuchStore  # type: ignore[attr-defined]


def test_importing_the_package_does_not_load_redis() -> None:
    code = (
        "import sys, ponos_redis\n"
        "print('redis.asyncio' in sys.modules, 'ponos_redis.backends.redis' in sys.modules)\n"
        "store = ponos_redis.RedisAggregatorStore\n"
        "print('redis.asyncio' in sys.modules, store.__module__)\n"
        "from ponos_redis import RedisExecutorStore\n"
        "print(RedisExecutorStore.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.splitlines() == [
        "False False",
        "True ponos_redis.backends.redis",
        "ponos_redis.backends.redis",
    ]
