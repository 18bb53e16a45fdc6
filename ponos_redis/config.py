"""Configuration: the ``storage:`` block of a service's YAML file.

Every field is checked when the config is built, so a bad value raises
:class:`InvalidInputError` naming the field before any connection is made.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from . import _validate as v
from .errors import InvalidInputError

__all__ = [
    "ClusterSettings",
    "RedisSettings",
    "RetrySettings",
    "SentinelSettings",
    "StorageConfig",
    "TaskSettings",
]

Durability = Literal["none", "aof", "replicated"]


class _Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


def _positive(value: float, field: str) -> None:
    if isinstance(value, bool) or not value > 0:
        raise InvalidInputError(f"{field} must be > 0, got {value!r}")


def _host_port(entry: str, field: str) -> tuple[str, int]:
    v.string(entry, field, v.MAX_ADDRESS_CHARS)
    host, sep, port = entry.rpartition(":")
    valid = port.isascii() and port.isdigit() and not _URL_BAD_CHAR_RE.search(host)
    if not sep or not host or not valid or not 0 < int(port) < 65536:
        raise InvalidInputError(f"{field} entries must be host:port, got {entry!r}")
    return host.strip("[]"), int(port)


def _env_name(value: str | None, field: str) -> None:
    """A ``*_env`` field: the name of an environment variable (os.environ refuses a surrogate)."""
    if value is not None:
        v.string(value, field, v.MAX_ENV_NAME_CHARS)


_URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")
_URL_BAD_CHAR_RE = re.compile(r"[\s\x00-\x1f\x7f]")
_QUERY_NAME_RE = re.compile(r"[A-Za-z_]{1,64}")
# Query arguments a URL may carry (redis-py reads them into the connection's keywords),
# further limited to those the scheme's connection class takes.
_URL_OPTIONS = frozenset(
    {
        "db",
        "username",
        "password",
        "client_name",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_read_size",
        "retry_on_timeout",
        "health_check_interval",
        "max_connections",
        "protocol",
        "encoding",
        "encoding_errors",
        "lib_name",
        "lib_version",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_ciphers",
        "ssl_password",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
    }
)


def _bad_url(problem: str) -> InvalidInputError:
    return InvalidInputError(f"redis.url is not a valid Redis URL: {problem}")


def _check_url(url: object) -> None:
    """Check a Redis URL the way redis-py and :func:`connect` will read it.

    The messages never quote the URL: it may hold a password, and when a password
    holds an unencoded ``/``, ``?`` or ``#`` any part of the URL may be part of it.

    Raises:
        InvalidInputError: the URL is not one redis-py can connect with.
    """
    if not isinstance(url, str):
        raise InvalidInputError(f"redis.url must be a string, got {type(url).__name__}")
    if not url.startswith(_URL_SCHEMES):
        raise InvalidInputError("redis.url must start with redis://, rediss://, unix:// or redis+sentinel://")
    v.string(url, "redis.url", v.MAX_URL_CHARS)
    if _URL_BAD_CHAR_RE.search(url):
        raise _bad_url("it holds whitespace or control characters (percent-encode them)")
    scheme, _, rest = url.partition("://")
    authority_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    if "@" in rest[authority_end:]:
        raise _bad_url(
            "an '@' follows the host; percent-encode '/', '?', '#' and '@' in a user name, "
            "password or socket path (%2F, %3F, %23, %40), or give the password with password_env"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _bad_url("an IPv6 host must be enclosed in [ and ]") from None
    if scheme == "redis+sentinel":
        _check_sentinel_url(parts.netloc, parts.path)
        return
    if scheme == "unix":
        if not parts.path.strip("/"):
            raise _bad_url("a unix:// URL needs the socket's path (unix:///run/redis.sock)")
    else:
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise _bad_url("the port must be a number from 1 to 65535")
        db = parts.path.strip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise _bad_url("the path must be the database number (redis://host:6379/0)")
    _check_url_query(url, scheme)


def _check_sentinel_url(netloc: str, path: str) -> None:
    hosts = netloc.rpartition("@")[2]
    for n, entry in enumerate(hosts.split(","), start=1):
        host, sep, port = entry.rpartition(":")
        if not sep or not host.strip("[]") or not (port.isascii() and port.isdigit()):
            raise _bad_url(f"entry {n} of the sentinel list is not host:port (h1:p1,h2:p2)")
        if not 0 < int(port) < 65536:
            raise _bad_url(f"the port of entry {n} of the sentinel list must be a number from 1 to 65535")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise _bad_url("a redis+sentinel:// URL needs a service name (redis+sentinel://host:port/service)")
    if len(segments) > 2 or (len(segments) == 2 and not (segments[1].isascii() and segments[1].isdigit())):
        raise _bad_url("the path must be /service or /service/db (a database number)")


def _check_url_query(url: str, scheme: str) -> None:
    """Refuse query arguments redis-py would reject, or pass to a connection that fails on them."""
    if "?" not in url:
        return
    from redis.asyncio.connection import parse_url

    try:
        options = parse_url(url)
    except ValueError as exc:
        bad = re.match(r"Invalid value for '([A-Za-z_]{1,64})'", str(exc))
        raise _bad_url(
            f"the value of its {bad[1]!r} argument is invalid" if bad else "a query argument is invalid"
        ) from None
    accepted = _URL_OPTIONS & _connection_keywords(options.get("connection_class"))
    for name in options:
        if name in {"host", "port", "path", "connection_class"} or name in accepted:
            continue
        shown = repr(name) if _QUERY_NAME_RE.fullmatch(name) else "a query argument"
        supported = ", ".join(sorted(accepted))
        raise _bad_url(f"{shown} is not supported with {scheme}:// (supported: {supported})")


def _connection_keywords(connection_class: Any) -> set[str]:
    """The keywords a redis-py connection class (and its pool) takes."""
    from redis.asyncio.connection import Connection

    names = {"max_connections"}
    for cls in (connection_class or Connection).__mro__:
        init = vars(cls).get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


class RetrySettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The one retry policy for transient Redis errors.

    A call is retried with jittered exponential waits (from 50 ms, each at most
    ``max_backoff_ms``) until ``total_s`` seconds have passed since its first
    attempt or ``attempts`` attempts were made, whichever comes first. The
    defaults ride through a Sentinel failover with the shipped timings and an
    AOF load; ``attempts`` is a backstop that, with waits of up to 2 s, seldom
    ends the budget before ``total_s``. No attempt starts after ``total_s``;
    the last one may run past it by up to the socket timeouts.
    """

    attempts: int = 30
    max_backoff_ms: int = 2000
    total_s: float = 15.0

    def __post_init__(self) -> None:
        _positive(self.attempts, "redis.retry.attempts")
        _positive(self.max_backoff_ms, "redis.retry.max_backoff_ms")
        v.duration(self.total_s, "redis.retry.total_s")


class SentinelSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Redis behind Sentinel: the sentinels' addresses and the monitored master's name.

    ``password_env`` names the variable holding the data nodes' password,
    ``sentinel_password_env`` the sentinels' own (when they have one).
    """

    hosts: list[str]
    service: str
    password_env: str | None = None
    sentinel_password_env: str | None = None

    def __post_init__(self) -> None:
        if not self.hosts:
            raise InvalidInputError("redis.sentinel.hosts must list at least one host:port")
        for host in self.hosts:
            _host_port(host, "redis.sentinel.hosts")
        if not self.service:
            raise InvalidInputError("redis.sentinel.service must not be empty")
        v.ident(self.service, "redis.sentinel.service")
        _env_name(self.password_env, "redis.sentinel.password_env")
        _env_name(self.sentinel_password_env, "redis.sentinel.sentinel_password_env")

    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels as ``(host, port)`` pairs."""
        return [_host_port(h, "redis.sentinel.hosts") for h in self.hosts]


class ClusterSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A Redis Cluster: some of its nodes (the client discovers the rest)."""

    nodes: list[str]
    password_env: str | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise InvalidInputError("redis.cluster.nodes must list at least one host:port")
        for node in self.nodes:
            _host_port(node, "redis.cluster.nodes")
        _env_name(self.password_env, "redis.cluster.password_env")

    def addresses(self) -> list[tuple[str, int]]:
        """The startup nodes as ``(host, port)`` pairs."""
        return [_host_port(n, "redis.cluster.nodes") for n in self.nodes]


_URL_WITH_PASSWORD = "_url_with_password"


def _rebuild_redis_settings(fields: dict[str, Any]) -> RedisSettings:
    return RedisSettings(**fields)


class RedisSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True, dict=True):
    """Where Redis is and what it must promise.

    ``url`` is checked when the settings are built (scheme, host list, port,
    database, query arguments), so a malformed URL raises ``InvalidInputError``
    before any I/O; its message never quotes the URL.

    A password in ``url`` never leaves the object: ``url`` reads, prints and
    encodes (``msgspec.json.encode``, ``msgspec.to_builtins``, ``repr``) the way
    ``_connection.redact`` shows it, with ``***`` in its place, and
    :meth:`connection_url` gives the URL to connect with. Pickling and
    ``copy`` keep the password; equality ignores it, and
    ``msgspec.structs.replace`` or a round trip through an encoding drops it
    (the copy would send ``***``). ``password_env`` keeps the password out of
    the config altogether.

    ``username`` is the ACL user to log in to the data nodes as (the shipped
    ``docker/users.acl`` names the library's user ``ponos``), for every form:
    ``url``, ``sentinel`` and ``cluster``; a user name written in ``url`` wins.
    """

    url: str | None = None
    sentinel: SentinelSettings | None = None
    cluster: ClusterSettings | None = None
    username: str | None = None
    password_env: str | None = None
    durability: Durability = "aof"
    replicas: int = 1
    wait_timeout_ms: int = 500
    strict: bool = False
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    health_check_interval_s: float = 10.0
    max_connections: int = 100

    def __post_init__(self) -> None:
        chosen = [n for n in ("url", "sentinel", "cluster") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise InvalidInputError(
                f"redis needs exactly one of url / sentinel / cluster, got {chosen or 'none'}"
            )
        _env_name(self.password_env, "redis.password_env")
        if self.username is not None:
            v.ident(self.username, "redis.username")
        if self.url is not None:
            _check_url(self.url)
            from ._connection import redact

            shown = redact(self.url)
            if shown != self.url:  # keep the password out of every field
                self.__dict__[_URL_WITH_PASSWORD] = self.url
                msgspec.structs.force_setattr(self, "url", shown)
        if isinstance(self.replicas, bool) or self.replicas < 0:
            raise InvalidInputError(f"redis.replicas must be >= 0, got {self.replicas!r}")
        if self.durability == "replicated" and self.replicas < 1:
            raise InvalidInputError("redis.replicas must be >= 1 with durability: replicated")
        _positive(self.wait_timeout_ms, "redis.wait_timeout_ms")
        _positive(self.socket_timeout_s, "redis.socket_timeout_s")
        _positive(self.connect_timeout_s, "redis.connect_timeout_s")
        _positive(self.health_check_interval_s, "redis.health_check_interval_s")
        if isinstance(self.max_connections, bool) or not 1 <= self.max_connections <= 100_000:
            raise InvalidInputError(f"redis.max_connections must be 1-100000, got {self.max_connections!r}")

    def __repr__(self) -> str:
        # A URL may carry a password: never show it (reprs end up in logs).
        from ._connection import redact

        shown = ", ".join(
            f"{name}={redact(value) if name == 'url' and value else value!r}"
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not None
        )
        return f"RedisSettings({shown})"

    def __copy__(self) -> RedisSettings:
        return self  # frozen: a copy would only lose the hidden password

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and deepcopy rebuild from the fields, with the URL that has the password.
        fields = {name: getattr(self, name) for name in self.__struct_fields__}
        fields["url"] = self.connection_url()
        return (_rebuild_redis_settings, (fields,))

    def connection_url(self) -> str | None:
        """The URL to connect with, password included (``url`` shows ``***`` in its place)."""
        hidden: str | None = self.__dict__.get(_URL_WITH_PASSWORD)
        return self.url if hidden is None else hidden

    def password(self) -> str | None:
        """The password from the environment variable named by ``password_env``."""
        name = self.password_env
        if name is None and self.sentinel is not None:
            name = self.sentinel.password_env
        if name is None and self.cluster is not None:
            name = self.cluster.password_env
        if name is None:
            return None
        value = os.environ.get(name)
        if value is None:
            raise InvalidInputError(f"password_env names {name!r}, which is not set")
        return value


class TaskSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``tasks:`` block: leases, attempts, retention and the payload bound."""

    default_lease_s: float = 30.0
    max_attempts: int = 5
    retention_s: float = 86400.0
    max_payload_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        v.duration(self.default_lease_s, "tasks.default_lease_s")
        _positive(self.max_attempts, "tasks.max_attempts")
        v.duration(self.retention_s, "tasks.retention_s", allow_zero=True)
        _positive(self.max_payload_bytes, "tasks.max_payload_bytes")
        if self.max_payload_bytes > 512 * 1024 * 1024:
            raise InvalidInputError("tasks.max_payload_bytes must be at most 512 MiB")


def _yaml_problem(exc: Exception) -> str:
    """What is wrong with a config file, without quoting its text (a password may be in it)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or "invalid YAML"
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(exc, yaml.YAMLError):
        return "invalid YAML"
    from ._connection import redact

    return redact(str(exc))


class StorageConfig(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``storage:`` block; every field is described in ``docs/configuration.md``."""

    type: Literal["redis", "memory"] = "memory"
    namespace: str = "default"
    redis: RedisSettings | None = None
    tasks: TaskSettings = msgspec.field(default_factory=TaskSettings)
    events_maxlen: int = 100_000
    history_maxlen: int = 1_000
    block_window: int = 10_000
    processed_ttl_s: float = 604_800.0
    create_namespace: bool = True

    def __post_init__(self) -> None:
        v.namespace(self.namespace)
        if not isinstance(self.create_namespace, bool):
            raise InvalidInputError(f"create_namespace must be true or false, got {self.create_namespace!r}")
        if self.type == "redis" and self.redis is None:
            raise InvalidInputError("storage.type is redis but there is no redis: block")
        _positive(self.events_maxlen, "events_maxlen")
        _positive(self.history_maxlen, "history_maxlen")
        _positive(self.block_window, "block_window")
        v.duration(self.processed_ttl_s, "processed_ttl_s")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StorageConfig:
        """Build from the mapping under ``storage:``.

        Raises:
            InvalidInputError: a field is missing, unknown, of the wrong type or out of range.
        """
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"storage config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        if "type" not in data and data.get("redis") is not None:
            data["type"] = "redis"
        try:
            return msgspec.convert(data, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidInputError(f"invalid storage config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> StorageConfig:
        """Read a YAML file whose top level has ``storage:``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
            doc = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problem = _yaml_problem(exc)
            raise InvalidInputError(f"cannot read storage config {str(path)!r}: {problem}") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("storage"), Mapping):
            raise InvalidInputError(f"{str(path)!r} has no top-level 'storage:' mapping")
        return cls.from_dict(doc["storage"])

    @classmethod
    def from_string(cls, value: str) -> StorageConfig:
        """``"memory"`` or a Redis URL."""
        if value == "memory":
            return cls(type="memory")
        if "://" not in value:
            # Quote it only when it cannot be a mistyped URL with a password.
            quoted = "@" not in value and len(value) <= 200
            shown = f", got {value!r}" if quoted else ""
            raise InvalidInputError(f"store must be 'memory' or a Redis URL{shown}")
        return cls(type="redis", redis=RedisSettings(url=value))

    @classmethod
    def coerce(
        cls, value: StorageConfig | str | Mapping[str, Any], namespace: str | None = None
    ) -> StorageConfig:
        """Any accepted form of config as a StorageConfig; ``namespace`` overrides its namespace."""
        if isinstance(value, StorageConfig):
            cfg = value
        elif isinstance(value, str):
            cfg = cls.from_string(value)
        elif isinstance(value, Mapping):
            cfg = cls.from_dict(value)
        else:
            raise InvalidInputError(
                f"config must be a StorageConfig, a mapping or a string, got {type(value).__name__}"
            )
        if namespace is not None:
            cfg = msgspec.structs.replace(cfg, namespace=v.namespace(namespace))
        return cfg
