"""Connection errors no retry can fix are said at once, as StoreConfigurationError.

A refused password, a plain URL naming a read-only replica and a database index
the server does not have are configuration mistakes: the store raises
StoreConfigurationError after one attempt (counted by the server's own error
statistics), saying which mistake it is and never showing the password. Every
store here has the default config apart from what names the server.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator

import pytest
import redis
from _redis_support import make_task

from ponos_redis import StorageConfig, StoreConfigurationError, open_aggregator_store
from ponos_redis._redis_server import RedisServer
from ponos_redis._topology import ReplicaGroup, command

pytestmark = [
    pytest.mark.redis_only,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="not on PATH: redis-server"),
]

SECRET = "perm-S3cret-Pa55-never-shown"
# One attempt takes milliseconds on loopback; the default retry budget is 15 s.
AT_ONCE_S = 1.0


def error_count(port: int, code: str, password: str | None = None) -> int:
    """How many ``code`` error replies the server on ``port`` gave (INFO errorstats)."""
    if password is None:
        stats = command(port, "INFO", "errorstats")
    else:
        with redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5) as client:
            stats = client.info("errorstats")
    entry = stats.get(f"errorstat_{code}")
    return int(entry["count"]) if entry else 0


def connections_received(port: int) -> int:
    """INFO stats total_connections_received, counting the connection that asks."""
    return int(command(port, "INFO", "stats")["total_connections_received"])


async def open_and_write(cfg: StorageConfig | str, namespace: str) -> None:
    async with open_aggregator_store(cfg, namespace=namespace) as store:
        await store.save_task(make_task("t1"))


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    with RedisServer(extra={"requirepass": SECRET}) as server:
        yield server


@pytest.mark.parametrize(
    ("how", "code"),
    [("wrong-password-in-url", "WRONGPASS"), ("wrong-password-env", "WRONGPASS"), ("no-password", "NOAUTH")],
)
async def test_a_refused_password_is_said_at_once(
    protected: RedisServer,
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
    code: str,
) -> None:
    port = protected.port
    redis: dict[str, object]
    if how == "wrong-password-in-url":
        redis = {"url": f"redis://:{SECRET}-wrong@127.0.0.1:{port}/0"}
    elif how == "wrong-password-env":
        monkeypatch.setenv("PONOS_TEST_WRONG_SECRET", f"{SECRET}-wrong")
        redis = {"url": f"redis://127.0.0.1:{port}/0", "password_env": "PONOS_TEST_WRONG_SECRET"}
    else:
        redis = {"url": f"redis://127.0.0.1:{port}/0"}
    cfg = StorageConfig.from_dict({"namespace": redis_namespace, "redis": redis})
    before = error_count(port, code, SECRET)
    start = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="ponos_redis"), pytest.raises(StoreConfigurationError) as err:
        await open_and_write(cfg, redis_namespace)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert "authentication failed" in message
    assert code in message
    assert SECRET not in message
    assert SECRET not in caplog.text
    assert "transient" not in caplog.text, "no retry was logged"
    assert elapsed < AT_ONCE_S
    assert error_count(port, code, SECRET) - before == 1, "one attempt"


async def test_a_plain_url_naming_a_replica_is_said_at_once(redis_namespace: str) -> None:
    with ReplicaGroup(replicas=1) as group:
        replica = group.nodes[1]
        before = error_count(replica.port, "READONLY")
        start = time.monotonic()
        with pytest.raises(StoreConfigurationError) as err:
            await open_and_write(replica.url, redis_namespace)
        elapsed = time.monotonic() - start
        assert "read-only replica" in str(err.value)
        assert "sentinel" in str(err.value).lower(), "it says how to follow failovers"
        assert elapsed < AT_ONCE_S
        assert error_count(replica.port, "READONLY") - before == 1, "one attempt"
        # The same config on the master works.
        await open_and_write(group.master.url, redis_namespace)


async def test_a_database_index_the_server_lacks_is_said_at_once(redis_namespace: str) -> None:
    with RedisServer() as server:
        assert command(server.port, "CONFIG", "GET", "databases") == {"databases": "16"}
        before = connections_received(server.port)
        start = time.monotonic()
        with pytest.raises(StoreConfigurationError) as err:
            await open_and_write(f"redis://127.0.0.1:{server.port}/99", redis_namespace)
        elapsed = time.monotonic() - start
        message = str(err.value)
        assert "database index 99" in message
        assert "DB index is out of range" in message
        assert "CONFIG" not in message, "said as a missing database, not as a CONFIG problem"
        assert elapsed < AT_ONCE_S
        # One attempt: one connection, refused at its SELECT (the count's own connection is the +1).
        assert connections_received(server.port) - before == 1 + 1
        # The highest index the server has works.
        await open_and_write(f"redis://127.0.0.1:{server.port}/15", redis_namespace)
