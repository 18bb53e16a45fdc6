"""Client construction and the retry policy's choices, without a server."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import pytest
from redis import exceptions as rexc
from redis.asyncio.sentinel import SentinelConnectionPool

from ponos_redis import InvalidInputError, StoreConfigurationError, StoreUnavailableError
from ponos_redis._connection import (
    _DatabaseIndexError,
    can_rediscover,
    configuration_problem,
    connect,
    is_transient,
    redact,
    retrying,
)
from ponos_redis.config import ClusterSettings, RedisSettings, RetrySettings, SentinelSettings


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
        rexc.NoScriptError("No matching script. Please use EVAL.", status_code="NOSCRIPT"),
        # The same reply as redis-py words it when it came back for a command in a pipeline.
        rexc.ResponseError(
            "Command # 1 (EVALSHA 4785c8 7 ponos:{ns}:seq...) of pipeline caused error: "
            "('NOREPLICAS Not enough good replicas to write.',)"
        ),
    ],
)
def test_transient_errors_are_retried(exc: Exception) -> None:
    assert is_transient(exc)


def test_an_error_of_a_command_in_a_pipeline_is_judged_by_its_reply() -> None:
    wrapped = rexc.ResponseError(
        "Command # 1 (EVALSHA 4785c8 7 ponos:{ns}:seq...) of pipeline caused error: "
        "WRONGTYPE Operation against a key"
    )
    assert not is_transient(wrapped)


@pytest.mark.parametrize(
    "exc",
    [
        rexc.ResponseError("WRONGTYPE Operation against a key"),
        rexc.DataError("x"),
    ],
)
def test_other_errors_are_not_retried(exc: Exception) -> None:
    assert not is_transient(exc)
    assert configuration_problem(exc) is None


def _cluster_cannot_connect(cause: Exception) -> rexc.RedisClusterException:
    try:
        raise rexc.RedisClusterException(f"Redis Cluster cannot be connected: {cause}") from cause
    except rexc.RedisClusterException as exc:
        return exc


# As redis-py raises them: the code is stripped from the message and kept in status_code.
_AUTH_ERRORS = [
    rexc.AuthenticationError("invalid username-password pair or user is disabled.", status_code="WRONGPASS"),
    rexc.AuthenticationError("Authentication required.", status_code="NOAUTH"),
    rexc.AuthenticationError("Invalid Username or Password"),
    rexc.AuthenticationWrongNumberOfArgsError("wrong number of arguments for 'auth' command"),
    rexc.ResponseError("WRONGPASS invalid username-password pair or user is disabled."),
    rexc.ResponseError("NOAUTH Authentication required."),
    _cluster_cannot_connect(rexc.AuthenticationError("invalid password", status_code="WRONGPASS")),
]


@pytest.mark.parametrize("exc", _AUTH_ERRORS)
@pytest.mark.parametrize("rediscovers", [True, False])
def test_a_refused_password_is_a_configuration_problem(exc: Exception, rediscovers: bool) -> None:
    assert not is_transient(exc, rediscovers=rediscovers)
    problem = configuration_problem(exc, rediscovers=rediscovers)
    assert problem is not None
    assert problem.startswith("authentication failed")


@pytest.mark.parametrize(
    "exc",
    [
        _DatabaseIndexError("the URL selects database index 99, and the server answered ..."),
        rexc.ResponseError("DB index is out of range"),
    ],
)
def test_a_missing_database_is_a_configuration_problem(exc: Exception) -> None:
    assert not is_transient(exc)
    problem = configuration_problem(exc)
    assert problem is not None
    assert "database index does not exist" in problem


@pytest.mark.parametrize(
    "exc",
    [
        rexc.ReadOnlyError("You can't write against a read only replica.", status_code="READONLY"),
        rexc.ResponseError("READONLY You can't write against a read only replica."),
    ],
)
def test_readonly_is_transient_only_for_a_client_that_rediscovers(exc: Exception) -> None:
    assert is_transient(exc, rediscovers=True)
    assert configuration_problem(exc, rediscovers=True) is None
    assert not is_transient(exc, rediscovers=False)
    problem = configuration_problem(exc, rediscovers=False)
    assert problem is not None
    assert "read-only replica" in problem


async def test_which_clients_rediscover_a_master() -> None:
    clients = {
        "plain": connect(RedisSettings(url="redis://127.0.0.1:6379/0")),
        "unix": connect(RedisSettings(url="unix:///tmp/nowhere.sock")),
        "sentinel-url": connect(RedisSettings(url="redis+sentinel://127.0.0.1:26379/ponos")),
        "sentinel": connect(RedisSettings(sentinel=SentinelSettings(hosts=["127.0.0.1:26379"], service="p"))),
        "cluster": connect(RedisSettings(cluster=ClusterSettings(nodes=["127.0.0.1:7000"]))),
    }
    try:
        assert {name: can_rediscover(c) for name, c in clients.items()} == {
            "plain": False,
            "unix": False,
            "sentinel-url": True,
            "sentinel": True,
            "cluster": True,
        }
    finally:
        for client in clients.values():
            await client.aclose()


# -- the retry loop, with calls that fail on cue (no server) ------------------------------------


class Flaky:
    """A call that raises ``errors`` in turn (the last one for ever), or returns "ok" when none."""

    def __init__(self, *errors: Exception, succeed_after: int | None = None) -> None:
        self.errors = errors
        self.succeed_after = succeed_after
        self.calls = 0

    def __call__(self) -> Awaitable[str]:
        self.calls += 1
        n = self.calls

        async def attempt() -> str:
            if self.succeed_after is not None and n > self.succeed_after:
                return "ok"
            raise self.errors[min(n, len(self.errors)) - 1]

        return attempt()


async def _timed(
    policy: RetrySettings, call: Callable[[], Awaitable[str]], **kw: bool
) -> tuple[Exception, float]:
    start = time.monotonic()
    with pytest.raises((StoreUnavailableError, StoreConfigurationError)) as err:
        await retrying(policy, call, "op", **kw)
    return err.value, time.monotonic() - start


def test_default_policy() -> None:
    policy = RetrySettings()
    assert (policy.attempts, policy.max_backoff_ms, policy.total_s) == (30, 2000, 15.0)


async def test_retry_stops_by_time() -> None:
    call = Flaky(rexc.ConnectionError("refused"))
    policy = RetrySettings(attempts=1000, max_backoff_ms=50, total_s=0.3)
    exc, elapsed = await _timed(policy, call)
    assert isinstance(exc, StoreUnavailableError)
    assert 0.3 <= elapsed < 0.3 + 0.25
    assert 1 < call.calls < 1000, "the time bound ended it, not the attempts"
    assert f"{call.calls} attempt(s)" in str(exc)
    assert re.search(r"Redis unavailable for 0\.[3-5] s", str(exc)), str(exc)
    assert "safe to repeat" in str(exc)


async def test_retry_never_sleeps_past_its_budget() -> None:
    # Waits of up to 10 s, a budget of 0.4 s: the last wait is cut to what is left.
    call = Flaky(rexc.ConnectionError("refused"))
    policy = RetrySettings(attempts=1000, max_backoff_ms=10_000, total_s=0.4)
    exc, elapsed = await _timed(policy, call)
    assert isinstance(exc, StoreUnavailableError)
    assert 0.4 <= elapsed < 0.4 + 0.15


async def test_retry_stops_by_attempts() -> None:
    call = Flaky(rexc.TimeoutError("timed out"))
    policy = RetrySettings(attempts=3, max_backoff_ms=10, total_s=60)
    exc, elapsed = await _timed(policy, call)
    assert isinstance(exc, StoreUnavailableError)
    assert call.calls == 3
    assert "3 attempt(s)" in str(exc)
    assert elapsed < 1.0


@pytest.mark.parametrize("exc", _AUTH_ERRORS[:2])
async def test_a_configuration_problem_is_raised_after_one_attempt(exc: Exception) -> None:
    call = Flaky(exc)
    error, elapsed = await _timed(RetrySettings(), call)
    assert isinstance(error, StoreConfigurationError)
    assert call.calls == 1
    assert elapsed < 0.5
    assert "authentication failed" in str(error)


async def test_readonly_is_retried_only_by_a_client_that_rediscovers() -> None:
    readonly = rexc.ReadOnlyError("You can't write against a read only replica.")
    call = Flaky(readonly, succeed_after=2)
    assert await retrying(RetrySettings(), call, "op", rediscovers=True) == "ok"
    assert call.calls == 3
    call = Flaky(readonly, succeed_after=2)
    error, _ = await _timed(RetrySettings(), call, rediscovers=False)
    assert isinstance(error, StoreConfigurationError)
    assert "read-only replica" in str(error)
    assert call.calls == 1


async def test_noscript_is_retried() -> None:
    # SCRIPT FLUSH between redis-py's reload of a script and its second EVALSHA.
    call = Flaky(rexc.NoScriptError("No matching script.", status_code="NOSCRIPT"), succeed_after=1)
    assert await retrying(RetrySettings(), call, "op") == "ok"
    assert call.calls == 2


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


class _Pool(SentinelConnectionPool):
    """A Sentinel pool that only counts how often its idle connections were dropped."""

    def __init__(self) -> None:
        self.dropped: list[bool] = []

    async def disconnect(self, inuse_connections: bool = True) -> None:
        self.dropped.append(inuse_connections)


class _SentinelClient:
    def __init__(self) -> None:
        self.connection_pool = _Pool()


async def test_noreplicas_behind_sentinel_drops_the_idle_connections_before_the_next_attempt() -> None:
    # A master cut off from its replicas may have been replaced: the next attempt must
    # ask the sentinels, which only a new connection does.
    client = _SentinelClient()
    noreplicas = rexc.ResponseError(
        "Command # 1 (EVALSHA x 1 k) of pipeline caused error: "
        "('NOREPLICAS Not enough good replicas to write.',)"
    )
    call = Flaky(noreplicas, noreplicas, succeed_after=2)
    policy = RetrySettings(max_backoff_ms=10, total_s=5)
    assert await retrying(policy, call, "op", client=client) == "ok"
    assert client.connection_pool.dropped == [False, False], "once before each later attempt, idle ones only"


async def test_other_transient_errors_keep_the_connections() -> None:
    client = _SentinelClient()
    call = Flaky(rexc.ConnectionError("refused"), succeed_after=2)
    assert await retrying(RetrySettings(max_backoff_ms=10, total_s=5), call, "op", client=client) == "ok"
    assert client.connection_pool.dropped == []
