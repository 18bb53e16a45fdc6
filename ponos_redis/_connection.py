"""Connections to Redis and the one retry policy.

Which errors are retried, and why a retry is safe:

- ``ConnectionError`` / ``TimeoutError``: the server vanished, froze or is
  failing over. The command may or may not have been applied, so only
  operations that are safe to repeat go through here, and every store
  operation is (each script detects its own replay or is idempotent; see
  docs/durability.md).
- ``BusyLoadingError``: the server is loading its AOF/RDB after a restart;
  nothing was applied.
- ``ReadOnlyError``, ``NOREPLICAS``, ``MASTERDOWN``: we reached a replica or a
  master that refuses writes; nothing was applied. Sentinel and Cluster
  clients then rediscover the master on the next attempt.
- ``TRYAGAIN``, ``CLUSTERDOWN``, ``MOVED``/``ASK`` left over by the cluster
  client: the cluster is resharding or failing over; nothing was applied.
- The cluster client's ``SlotNotCoveredError``, and its "cannot be connected"
  (no node answered; a connection error underneath): its slot map is being
  rebuilt or no node is up. Other ``RedisClusterException`` are bugs.
- ``NoScriptError``: a ``SCRIPT FLUSH`` (or a failover) emptied the script
  cache between redis-py's reload of a script and its second ``EVALSHA``; the
  script did not run, and the next attempt loads it again.

Errors no retry can fix raise :class:`StoreConfigurationError` at once:
a refused password or user (``WRONGPASS``, ``NOAUTH``, redis-py's
``AuthenticationError``), a command or key the user's ACL does not allow
(``NOPERM``), a database index the server does not have, and ``READONLY``
from a client that cannot look for another master (a plain URL naming a
replica; see :func:`can_rediscover`).

redis-py's own retry is switched off (``Retry(NoBackoff(), 0)``) so this is the
only retry layer: jittered exponential backoff, bounded by total time
(``retry.total_s``) and by attempts (``retry.attempts``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
import tenacity
from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from ._redact import redact
from .config import RedisSettings, RetrySettings
from .errors import InvalidInputError, PonosStorageError, StoreConfigurationError, StoreUnavailableError

__all__ = [
    "RETRY_OBSERVERS",
    "RedisClient",
    "RetryObserver",
    "can_rediscover",
    "configuration_problem",
    "connect",
    "redact",
    "retrying",
]

log = logging.getLogger("ponos_redis")

RedisClient = aioredis.Redis | RedisCluster
T = TypeVar("T")

_RETRIED_REPLIES = ("NOREPLICAS", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY")
_AUTH_REPLIES = ("WRONGPASS", "NOAUTH")
_NO_SUCH_DB = "DB index is out of range"
# What redis-py's BlockingConnectionPool raises when no connection became free within its timeout.
_POOL_TIMEOUT = "No connection available."


class _DatabaseIndexError(rexc.ConnectionError):
    """SELECT refused the configured database index when a connection was set up.

    A connection error, not a ``ResponseError``, so that no caller mistakes it for
    the refusal of one command (a renamed ``CONFIG``, say): it refuses the whole
    connection. redis-py disconnects a connection whose setup raised a RedisError.
    """


async def _on_connect(connection: AbstractConnection) -> None:
    """redis-py's own connection setup (AUTH, HELLO, SELECT), saying which database is missing."""
    try:
        await connection.on_connect()
    except rexc.ResponseError as exc:
        if _NO_SUCH_DB not in str(exc):
            raise
        db = getattr(connection, "db", "?")
        raise _DatabaseIndexError(
            f"the URL selects database index {db}, and the server answered {_NO_SUCH_DB!r}: "
            f"it has fewer databases (its 'databases' setting, 16 unless changed); "
            f"use an index the server has, such as 0"
        ) from exc


def can_rediscover(client: object) -> bool:
    """Whether ``client`` looks for the current master by itself (Sentinel, Cluster).

    For such a client ``READONLY`` means a failover is under way and the next
    attempt reaches the new master; for a client of a plain URL it means the URL
    names a replica, which no retry changes.
    """
    if isinstance(client, RedisCluster):
        return True
    return isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool)


def configuration_problem(exc: BaseException, *, rediscovers: bool = True) -> str | None:
    """What is wrong with the configuration when ``exc`` is an error no retry can fix, else None.

    ``rediscovers``: whether the client finds a new master by itself (:func:`can_rediscover`).
    The text never contains a password (Redis and redis-py do not echo it; it is redacted too).
    """
    if isinstance(exc, rexc.RedisClusterException) and exc.__cause__ is not None:
        # "cannot be connected": the error of the last startup node is chained underneath.
        return configuration_problem(exc.__cause__, rediscovers=rediscovers)
    if not isinstance(exc, rexc.RedisError):
        return None
    text = str(exc)
    code = getattr(exc, "status_code", None) or ""
    if (
        isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError)
        or code in _AUTH_REPLIES
        or text.startswith(_AUTH_REPLIES)
    ):
        reply = f"{code} {text}" if code and not text.startswith(code) else text
        return (
            f"authentication failed: the server refused the configured user or password "
            f"({redact(reply)}); check password_env and the credentials in the URL"
        )
    if isinstance(exc, rexc.NoPermissionError) or code == "NOPERM" or text.startswith("NOPERM"):
        reply = text if text.startswith("NOPERM") else f"NOPERM {text}"
        return (
            f"the server refused the configured user a command or key ({redact(reply)}): the user's "
            "ACL lacks a right this needs (the users of the shipped docker/users.acl: docs/security.md)"
        )
    if isinstance(exc, _DatabaseIndexError) or text.startswith(_NO_SUCH_DB):
        detail = text if isinstance(exc, _DatabaseIndexError) else f"the server answered {text!r}"
        return f"the database index does not exist: {detail}"
    if not rediscovers and (isinstance(exc, rexc.ReadOnlyError) or text.startswith("READONLY")):
        return (
            "the server is a read-only replica (READONLY: it refuses writes), and a plain URL "
            "never leads anywhere else: point redis.url at the master, or use Sentinel "
            "(redis+sentinel:// or a sentinel: block) to follow failovers"
        )
    return None


def is_transient(exc: BaseException, *, rediscovers: bool = True) -> bool:
    """Whether ``exc`` is an error the retry policy handles.

    ``rediscovers``: whether the client finds a new master by itself (:func:`can_rediscover`);
    without it ``READONLY`` is a configuration problem, not a failover.
    """
    if configuration_problem(exc, rediscovers=rediscovers) is not None:
        return False
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | rexc.BusyLoadingError | rexc.ReadOnlyError):
        return True
    if isinstance(exc, rexc.NoScriptError):
        return True  # the script did not run; the next attempt loads it again
    if isinstance(exc, rexc.ClusterDownError | rexc.TryAgainError | rexc.MovedError | rexc.AskError):
        return True
    if isinstance(exc, rexc.SlotNotCoveredError):
        return True  # the cluster client's slot map is being rebuilt
    if isinstance(exc, rexc.RedisClusterException):
        # Not a RedisError: "cannot be connected" (no startup node answered) chains the
        # connection error; anything else (a key outside any slot, ...) is a bug, not retried.
        return exc.__cause__ is not None and is_transient(exc.__cause__, rediscovers=rediscovers)
    return isinstance(exc, rexc.ResponseError) and _reply(exc).startswith(_RETRIED_REPLIES)


def _reply(exc: BaseException) -> str:
    """The server's error reply in ``exc``, without redis-py's note on a pipeline's command.

    In a pipeline redis-py rewrites the message of a plain ``ResponseError`` to
    ``Command # N (...) of pipeline caused error: <reply>``; the reply is what says
    whether the error is transient (``NOREPLICAS`` from a master cut off from its
    replicas, say).
    """
    text = str(exc)
    marker = " of pipeline caused error: "
    if text.startswith("Command # ") and marker in text:
        text = text.split(marker, 1)[1].lstrip("('\"")
    return text


def _cut_off_master(exc: BaseException) -> bool:
    """Whether ``exc`` is a master refusing writes because it lost its replicas (``NOREPLICAS``).

    Behind Sentinel that master may have been replaced on the other side of a
    partition: the connections to it are dropped, so the next attempt asks the
    sentinels where the master is instead of asking the same server again.
    """
    return isinstance(exc, rexc.ResponseError) and _reply(exc).startswith("NOREPLICAS")


async def _forget_master(client: object) -> None:
    """Drop the idle connections of a Sentinel client, so new ones look the master up again."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        await pool.disconnect(inuse_connections=False)


def _budgeted_wait(policy: RetrySettings, offset: float = 0.0) -> Callable[[tenacity.RetryCallState], float]:
    """Jittered exponential waits from 50 ms up to ``max_backoff_ms``, never past ``total_s``.

    The last wait is cut to what is left of the budget, so the last attempt starts
    by ``total_s`` at the latest: one attempt (bounded by the socket timeouts) is
    all a call can run past it.
    """
    jittered = tenacity.wait_random_exponential(multiplier=0.05, max=policy.max_backoff_ms / 1000)

    def wait(state: tenacity.RetryCallState) -> float:
        left = policy.total_s - offset - (state.seconds_since_start or 0.0)
        return max(0.0, min(jittered(state), left))

    return wait


# Observers of the retry policy, called as ``observer(outcome, operation, error_type)``:
# ``"retried"`` (a transient error; another attempt follows), ``"gave_up"`` (the budget is
# spent: StoreUnavailableError) and ``"ridden_through"`` (a call succeeded after transient
# errors; ``error_type`` is the last one's). Empty unless something registers one
# (``ponos_redis.metrics`` does when asked), so nothing is paid for it otherwise; an
# observer that raises is logged and never fails the call.
RetryObserver = Callable[[str, str, str], None]
RETRY_OBSERVERS: list[RetryObserver] = []


def _notify(outcome: str, what: str, error: str) -> None:
    for observer in RETRY_OBSERVERS:
        try:
            observer(outcome, what, error)
        except Exception:
            log.exception("retry observer %r failed", observer)


def _never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` says the command never left the client: no connection was free in the pool."""
    if isinstance(exc, rexc.MaxConnectionsError):
        return True
    return isinstance(exc, rexc.ConnectionError) and str(exc) == _POOL_TIMEOUT


async def retrying(
    policy: RetrySettings,
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    rediscovers: bool = True,
    client: object | None = None,
) -> T:
    """Run ``call`` under the retry policy; translate what is left into our errors.

    Transient errors are retried until ``policy.total_s`` seconds have passed since
    the first attempt or ``policy.attempts`` attempts were made, whichever comes
    first; then :class:`StoreUnavailableError`. An error no retry can fix raises
    :class:`StoreConfigurationError` after the one attempt. Each retry is logged
    (a warning), and so is a call that succeeded after transient errors (one
    ``redis_ridden_through`` line); :data:`RETRY_OBSERVERS` hear of both.

    The first attempt runs bare: the retry machinery is built only after a
    transient error, so a call that succeeds pays nothing for it. A first
    attempt that found no free connection in the pool (it waited the pool's
    timeout) raises :class:`StoreUnavailableError` saying nothing was sent.

    Args:
        rediscovers: whether the client finds a new master by itself
            (:func:`can_rediscover`): only then is ``READONLY`` worth retrying.
        client: the client ``call`` uses; a Sentinel client's idle connections are
            dropped after ``NOREPLICAS``, so the next attempt asks the sentinels
            where the master is (it may have moved while this one was cut off).
    """
    started = time.monotonic()
    try:
        return await call()
    except PonosStorageError:
        raise
    except (rexc.RedisError, rexc.RedisClusterException) as exc:
        if _never_sent(exc):
            raise StoreUnavailableError(
                f"{what}: no connection to Redis was free within the pool's wait "
                f"(redis.max_connections connections, all busy: {type(exc).__name__}: {exc}); "
                f"nothing was sent, so nothing was applied; the call is safe to repeat"
            ) from None
        if not is_transient(exc, rediscovers=rediscovers):
            raise _translate(exc, what, policy, rediscovers, 1, started) from None
        first: BaseException = exc
    return await _retry_after_first(policy, call, what, rediscovers, started, first, client)


def _translate(
    exc: BaseException, what: str, policy: RetrySettings, rediscovers: bool, attempts: int, started: float
) -> PonosStorageError:
    """The error a caller sees for ``exc``, the last error of ``attempts`` attempts."""
    problem = configuration_problem(exc, rediscovers=rediscovers)
    if problem is not None:
        return StoreConfigurationError(f"{what}: {problem}; no retry can fix this")
    if is_transient(exc, rediscovers=rediscovers):
        elapsed = time.monotonic() - started
        _notify("gave_up", what, type(exc).__name__)
        return StoreUnavailableError(
            f"{what}: Redis unavailable for {elapsed:.1f} s, {attempts} attempt(s) "
            f"(retry budget: {policy.total_s:g} s or {policy.attempts} attempts; last error "
            f"{type(exc).__name__}: {redact(str(exc))}); the outcome is unknown and the call "
            f"is safe to repeat"
        )
    return PonosStorageError(f"{what}: Redis error: {redact(str(exc))}")


async def _retry_after_first(
    policy: RetrySettings,
    call: Callable[[], Awaitable[T]],
    what: str,
    rediscovers: bool,
    started: float,
    first: BaseException,
    client: object | None = None,
) -> T:
    """The retry loop, entered after the first attempt failed with ``first`` (a transient error)."""
    offset = time.monotonic() - started
    attempts = 0
    last_error = ""
    replay = [first]
    forget = client is not None and _cut_off_master(first)

    async def attempt_call() -> T:
        nonlocal forget
        if replay:  # the first attempt, already made: its error goes through the policy
            raise replay.pop()
        if forget:
            forget = False
            await _forget_master(client)
        try:
            return await call()
        except rexc.ResponseError as exc:
            forget = client is not None and _cut_off_master(exc)
            raise

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal last_error
        last_error = type(state.outcome.exception()).__name__ if state.outcome else "?"
        log.warning(
            "%s: transient Redis error (%s), attempt %d of at most %d, %.1f s of %g s; next in %.2f s",
            what,
            last_error,
            state.attempt_number,
            policy.attempts,
            offset + (state.seconds_since_start or 0.0),
            policy.total_s,
            state.upcoming_sleep,
            extra={"event": "redis_retry", "operation": what, "error_type": last_error},
        )
        _notify("retried", what, last_error)

    retryer = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_delay(max(0.0, policy.total_s - offset))
        | tenacity.stop_after_attempt(policy.attempts),
        wait=_budgeted_wait(policy, offset),
        retry=tenacity.retry_if_exception(lambda exc: is_transient(exc, rediscovers=rediscovers)),
        reraise=True,
        before_sleep=before_sleep,
    )
    try:
        async for attempt in retryer:
            with attempt:
                attempts += 1
                result = await attempt_call()
                if attempts > 1:
                    _ridden_through(what, attempts, time.monotonic() - started, last_error)
                return result
        raise AssertionError("unreachable: tenacity reraises the last error")
    except PonosStorageError:
        raise
    except (rexc.RedisError, rexc.RedisClusterException) as exc:
        raise _translate(exc, what, policy, rediscovers, attempts, started) from None


def _ridden_through(what: str, attempts: int, elapsed: float, last_error: str) -> None:
    """A call succeeded after transient errors (a failover, a restart, an AOF loading)."""
    log.warning(
        "%s: succeeded after %d attempts in %.1f s (last transient error %s): ridden through",
        what,
        attempts,
        elapsed,
        last_error,
        extra={
            "event": "redis_ridden_through",
            "operation": what,
            "attempts": attempts,
            "seconds": round(elapsed, 3),
            "error_type": last_error,
        },
    )
    _notify("ridden_through", what, last_error)


def _common_kwargs(settings: RedisSettings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }


def _sentinel_from_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, str | None]:
    parts = urlsplit(url)
    hosts: list[tuple[str, int]] = []
    netloc = parts.netloc.rpartition("@")[2]
    for entry in netloc.split(","):
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit():
            raise InvalidInputError(f"redis+sentinel URL hosts must be host:port, got {entry!r}")
        hosts.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise InvalidInputError("redis+sentinel URL needs a service name: redis+sentinel://host:port/service")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    query = parse_qs(parts.query)
    if "password" in query:
        password = query["password"][0]
    if "username" in query:
        username = query["username"][0]
    return hosts, path[0], db, password, username


def connect(settings: RedisSettings) -> RedisClient:
    """A client for the configured topology; no I/O happens until first use."""
    kwargs = _common_kwargs(settings)
    password = settings.password()
    if password is not None:
        kwargs["password"] = password
    if settings.username is not None:
        kwargs["username"] = settings.username  # a plain URL's own user name wins (from_url)
    if settings.cluster is not None:
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in settings.cluster.addresses()],
            health_check_interval=settings.health_check_interval_s,
            **kwargs,
        )
    # A database index the server lacks fails each connection's setup (a cluster has only 0).
    kwargs["redis_connect_func"] = _on_connect
    if settings.sentinel is not None:
        hosts = settings.sentinel.addresses()
        service, db = settings.sentinel.service, 0
    elif settings.url is not None and settings.url.startswith("redis+sentinel://"):
        hosts, service, db, url_password, url_username = _sentinel_from_url(settings.connection_url() or "")
        if url_password is not None and "password" not in kwargs:
            kwargs["password"] = url_password
        if url_username is not None:
            kwargs["username"] = url_username
    else:
        assert settings.url is not None
        if settings.url.startswith("unix://"):
            del kwargs["socket_keepalive"]  # a TCP option; Unix sockets refuse it
        # A pool that waits (up to socket_timeout_s) for a free connection when all
        # max_connections are busy, instead of failing the call at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.connection_url() or "",
            health_check_interval=settings.health_check_interval_s,
            max_connections=settings.max_connections,
            timeout=settings.socket_timeout_s,
            **kwargs,
        )
        return aioredis.Redis.from_pool(pool)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.connect_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        # Without it each sentinel query retries 10 times (redis-py's default), so a dead
        # sentinel would hold up the discovery of the master by seconds: one retry layer only.
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.sentinel is not None and settings.sentinel.sentinel_password_env is not None:
        name = settings.sentinel.sentinel_password_env
        if name not in os.environ:
            raise InvalidInputError(f"sentinel_password_env names {name!r}, which is not set")
        sentinel_kwargs["password"] = os.environ[name]
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    master: _SentinelMaster = sentinel.master_for(
        service,
        redis_class=_SentinelMaster,
        db=db,
        health_check_interval=settings.health_check_interval_s,
    )
    master.sentinel_clients = list(sentinel.sentinels)
    return master


class _SentinelMaster(aioredis.Redis):
    """The client of a Sentinel service's master; closing it also closes its clients of the
    sentinels, which redis-py leaves open (each store would leak a connection per sentinel)."""

    sentinel_clients: list[aioredis.Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            for client in getattr(self, "sentinel_clients", ()):
                await client.aclose()
