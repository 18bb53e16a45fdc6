"""The durability policy is checked against the server's real configuration when a store opens."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ponos_redis import DurabilityError, StorageConfig
from ponos_redis._redis_server import RedisServer
from ponos_redis.backends.redis import RedisAggregatorStore

pytestmark = pytest.mark.redis_only

REDIS_CONF = Path(__file__).resolve().parents[2] / "docker" / "redis.conf"


def cfg(url: str, durability: str, *, strict: bool = True) -> StorageConfig:
    return StorageConfig.from_dict(
        {"namespace": "policy", "redis": {"url": url, "durability": durability, "strict": strict}}
    )


@pytest.fixture(scope="module")
def shipped() -> Iterator[RedisServer]:
    """docker/redis.conf as shipped (appendonly yes, appendfsync always, noeviction)."""
    with RedisServer(conf_file=REDIS_CONF) as srv:
        yield srv


@pytest.fixture(scope="module")
def volatile() -> Iterator[RedisServer]:
    """No AOF and an evicting memory policy: keeps no promise."""
    with RedisServer(extra={"maxmemory-policy": "allkeys-lru"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def everysec() -> Iterator[RedisServer]:
    with RedisServer(conf_file=REDIS_CONF, extra={"appendfsync": "everysec"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def config_denied() -> Iterator[RedisServer]:
    """CONFIG renamed away, as managed Redis services often do."""
    with RedisServer(conf_file=REDIS_CONF, extra={"rename-command": 'CONFIG ""'}) as srv:
        yield srv


async def test_shipped_config_keeps_the_aof_promise(shipped: RedisServer) -> None:
    store = await RedisAggregatorStore.open(cfg(shipped.url, "aof"))
    facts = await store.server_facts()
    await store.close()
    assert (facts.appendonly, facts.appendfsync, facts.maxmemory_policy) == ("yes", "always", "noeviction")


async def test_strict_refuses_a_server_without_aof(volatile: RedisServer) -> None:
    with pytest.raises(DurabilityError) as err:
        await RedisAggregatorStore.open(cfg(volatile.url, "aof"))
    text = str(err.value)
    assert "appendonly yes" in text
    assert "noeviction" in text


async def test_eviction_is_a_problem_even_without_durability(volatile: RedisServer) -> None:
    with pytest.raises(DurabilityError, match="noeviction"):
        await RedisAggregatorStore.open(cfg(volatile.url, "none"))


async def test_not_strict_opens_and_warns(volatile: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ponos_redis"):
        store = await RedisAggregatorStore.open(cfg(volatile.url, "aof", strict=False))
    await store.close()
    assert any("appendonly" in r.getMessage() for r in caplog.records)


async def test_everysec_does_not_keep_the_host_crash_promise(everysec: RedisServer) -> None:
    with pytest.raises(DurabilityError, match="appendfsync always"):
        await RedisAggregatorStore.open(cfg(everysec.url, "aof"))


async def test_replicated_needs_connected_replicas(shipped: RedisServer) -> None:
    with pytest.raises(DurabilityError, match="replica"):
        await RedisAggregatorStore.open(cfg(shipped.url, "replicated"))


async def test_denied_config_reads_as_unknown(config_denied: RedisServer) -> None:
    with pytest.raises(DurabilityError, match="unknown"):
        await RedisAggregatorStore.open(cfg(config_denied.url, "aof"))
    store = await RedisAggregatorStore.open(cfg(config_denied.url, "aof", strict=False))
    facts = await store.server_facts()
    await store.close()
    # INFO tells what CONFIG would not: AOF on, noeviction; appendfsync only CONFIG says.
    assert (facts.appendonly, facts.maxmemory_policy) == ("yes", "noeviction")
    assert facts.appendfsync == "unknown"
    assert facts.redis_version.startswith(("7.", "8.", "9."))
