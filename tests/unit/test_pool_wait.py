"""A call that found no free connection in the pool was never sent: it says so, and is
not reported as an unknown outcome; ``redis.max_connections`` is checked and used."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc

from ponos_redis import InvalidInputError, StoreUnavailableError
from ponos_redis._connection import connect, retrying
from ponos_redis.config import RedisSettings, RetrySettings


@pytest.mark.parametrize(
    "error",
    [rexc.ConnectionError("No connection available."), rexc.MaxConnectionsError("Too many connections")],
)
async def test_a_call_that_got_no_connection_says_nothing_was_sent(error: Exception) -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(StoreUnavailableError) as caught:
        await retrying(RetrySettings(), call, "save_task")
    assert "nothing was sent" in str(caught.value)
    assert "outcome is unknown" not in str(caught.value)
    assert calls == 1


async def test_a_successful_call_runs_once_without_retry_machinery() -> None:
    async def call() -> str:
        return "ok"

    assert await retrying(RetrySettings(), call, "get_task") == "ok"


def test_a_plain_url_client_waits_for_a_free_connection_up_to_max_connections() -> None:
    client = connect(RedisSettings(url="redis://127.0.0.1:6379/0", max_connections=7, socket_timeout_s=3))
    pool = client.connection_pool
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert pool.max_connections == 7
    assert pool.timeout == 3


@pytest.mark.parametrize("value", [0, -1, 100_001, True])
def test_max_connections_out_of_range_is_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="max_connections"):
        RedisSettings(url="redis://127.0.0.1:6379/0", max_connections=value)  # type: ignore[arg-type]
