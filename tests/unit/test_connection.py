"""Client construction and the retry policy's choices, without a server."""

from __future__ import annotations

import pytest
from redis import exceptions as rexc

from ponos_redis import InvalidInputError
from ponos_redis._connection import connect, is_transient, redact
from ponos_redis.config import RedisSettings, SentinelSettings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@127.0.0.1:6379/0", "redis://user:***@127.0.0.1:6379/0"),
        ("rediss://:pw@h:1/0", "rediss://:***@h:1/0"),
        (
            "redis+sentinel://:pw@a:1,b:2/ponos?password=x&db=1",
            "redis+sentinel://:***@a:1,b:2/ponos?password=***&db=1",
        ),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "exc",
    [
        rexc.ConnectionError("refused"),
        rexc.TimeoutError("t"),
        rexc.BusyLoadingError("loading"),
        rexc.ReadOnlyError("READONLY"),
        rexc.ResponseError("NOREPLICAS Not enough good replicas to write."),
        rexc.ResponseError("MASTERDOWN Link with MASTER is down"),
        rexc.TryAgainError("TRYAGAIN"),
        rexc.ClusterDownError("CLUSTERDOWN"),
    ],
)
def test_transient_errors_are_retried(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        rexc.ResponseError("WRONGTYPE Operation against a key"),
        rexc.NoScriptError("NOSCRIPT"),
        rexc.DataError("x"),
    ],
)
def test_other_errors_are_not_retried(exc: Exception) -> None:
    assert not is_transient(exc)


async def test_sentinel_url_and_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONOS_T_DATA_PW", "data-pw")
    monkeypatch.setenv("PONOS_T_SENTINEL_PW", "sentinel-pw")
    settings = RedisSettings(
        sentinel=SentinelSettings(
            hosts=["127.0.0.1:26379", "127.0.0.1:26380"],
            service="ponos",
            password_env="PONOS_T_DATA_PW",
            sentinel_password_env="PONOS_T_SENTINEL_PW",
        )
    )
    client = connect(settings)
    try:
        pool = client.connection_pool
        assert pool.connection_kwargs["password"] == "data-pw"
        sentinels = client.sentinel_clients  # type: ignore[union-attr]
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
        assert all(s.connection_pool.connection_kwargs["password"] == "sentinel-pw" for s in sentinels)
    finally:
        await client.aclose()


def test_missing_sentinel_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PONOS_T_NOPE", raising=False)
    settings = RedisSettings(
        sentinel=SentinelSettings(
            hosts=["127.0.0.1:26379"], service="ponos", sentinel_password_env="PONOS_T_NOPE"
        )
    )
    with pytest.raises(InvalidInputError, match="PONOS_T_NOPE"):
        connect(settings)


async def test_redis_sentinel_url_parses_hosts_service_and_db() -> None:
    client = connect(RedisSettings(url="redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/ponos/2"))
    try:
        assert client.connection_pool.service_name == "ponos"  # type: ignore[union-attr]
        assert client.connection_pool.connection_kwargs["db"] == 2
    finally:
        await client.aclose()
