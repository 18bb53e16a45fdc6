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
  master that refuses writes; nothing was applied. Sentinel clients then
  rediscover the master on the next attempt.
- ``TRYAGAIN``, ``CLUSTERDOWN``, ``MOVED``/``ASK`` left over by the cluster
  client: the cluster is resharding or failing over; nothing was applied.
- The cluster client's ``SlotNotCoveredError``, and its "cannot be connected"
  (no node answered; a connection error underneath): its slot map is being
  rebuilt or no node is up. Other ``RedisClusterException`` are bugs.

redis-py's own retry is switched off (``Retry(NoBackoff(), 0)``) so this is the
only retry layer: bounded attempts, jittered exponential backoff.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
import tenacity
from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from .config import RedisSettings, RetrySettings
from .errors import InvalidInputError, PonosStorageError, StoreUnavailableError

__all__ = ["RedisClient", "connect", "redact", "retrying"]

log = logging.getLogger("ponos_redis")

RedisClient = aioredis.Redis | RedisCluster
T = TypeVar("T")

_RETRIED_REPLIES = ("NOREPLICAS", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the retry policy handles."""
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | rexc.BusyLoadingError | rexc.ReadOnlyError):
        return True
    if isinstance(exc, rexc.ClusterDownError | rexc.TryAgainError | rexc.MovedError | rexc.AskError):
        return True
    if isinstance(exc, rexc.SlotNotCoveredError):
        return True  # the cluster client's slot map is being rebuilt
    if isinstance(exc, rexc.RedisClusterException):
        # Not a RedisError: "cannot be connected" (no startup node answered) chains the
        # connection error; anything else (a key outside any slot, ...) is a bug, not retried.
        return exc.__cause__ is not None and is_transient(exc.__cause__)
    return isinstance(exc, rexc.ResponseError) and str(exc).startswith(_RETRIED_REPLIES)


def redact(text: str) -> str:
    """Remove passwords from a Redis URL (user info and a ``password=`` query)."""
    text = _QUERY_PASSWORD_RE.sub(r"\1***", text)
    return _USERINFO_PASSWORD_RE.sub(r"\1***@", text)


_QUERY_PASSWORD_RE = re.compile(r"([?&]password=)[^&#\s]*")
_USERINFO_PASSWORD_RE = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]*@")


async def retrying(policy: RetrySettings, call: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``call`` under the retry policy; translate what is left into our errors."""
    retryer = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=policy.max_backoff_ms / 1000),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "%s: transient Redis error (%s), attempt %d of %d",
            what,
            type(state.outcome.exception()).__name__ if state.outcome else "?",
            state.attempt_number,
            policy.attempts,
        ),
    )
    try:
        async for attempt in retryer:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity reraises the last error")
    except PonosStorageError:
        raise
    except (rexc.RedisError, rexc.RedisClusterException) as exc:
        if is_transient(exc):
            raise StoreUnavailableError(
                f"{what}: Redis unavailable after {policy.attempts} attempts ({type(exc).__name__}: "
                f"{redact(str(exc))}); the outcome is unknown and the call is safe to repeat"
            ) from None
        raise PonosStorageError(f"{what}: Redis error: {redact(str(exc))}") from None


def _common_kwargs(settings: RedisSettings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }


def _sentinel_from_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
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
    query = parse_qs(parts.query)
    if "password" in query:
        password = query["password"][0]
    return hosts, path[0], db, password


def connect(settings: RedisSettings) -> RedisClient:
    """A client for the configured topology; no I/O happens until first use."""
    kwargs = _common_kwargs(settings)
    password = settings.password()
    if password is not None:
        kwargs["password"] = password
    if settings.cluster is not None:
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in settings.cluster.addresses()],
            health_check_interval=settings.health_check_interval_s,
            **kwargs,
        )
    if settings.sentinel is not None:
        hosts = settings.sentinel.addresses()
        service, db = settings.sentinel.service, 0
    elif settings.url is not None and settings.url.startswith("redis+sentinel://"):
        hosts, service, db, url_password = _sentinel_from_url(settings.url)
        if url_password is not None and "password" not in kwargs:
            kwargs["password"] = url_password
    else:
        assert settings.url is not None
        if settings.url.startswith("unix://"):
            del kwargs["socket_keepalive"]  # a TCP option; Unix sockets refuse it
        return aioredis.Redis.from_url(
            settings.url, health_check_interval=settings.health_check_interval_s, **kwargs
        )
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
