"""Configuration: the ``storage:`` block of a service's YAML file.

Every field is checked when the config is built, so a bad value raises
:class:`InvalidInputError` naming the field before any connection is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

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
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"{field} entries must be host:port, got {entry!r}")
    return host.strip("[]"), int(port)


class RetrySettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The one retry policy for transient Redis errors."""

    attempts: int = 6
    max_backoff_ms: int = 2000

    def __post_init__(self) -> None:
        _positive(self.attempts, "redis.retry.attempts")
        _positive(self.max_backoff_ms, "redis.retry.max_backoff_ms")


class SentinelSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
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

    def addresses(self) -> list[tuple[str, int]]:
        return [_host_port(h, "redis.sentinel.hosts") for h in self.hosts]


class ClusterSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nodes: list[str]
    password_env: str | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise InvalidInputError("redis.cluster.nodes must list at least one host:port")
        for node in self.nodes:
            _host_port(node, "redis.cluster.nodes")

    def addresses(self) -> list[tuple[str, int]]:
        return [_host_port(n, "redis.cluster.nodes") for n in self.nodes]


class RedisSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where Redis is and what it must promise."""

    url: str | None = None
    sentinel: SentinelSettings | None = None
    cluster: ClusterSettings | None = None
    password_env: str | None = None
    durability: Durability = "aof"
    replicas: int = 1
    wait_timeout_ms: int = 500
    strict: bool = False
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    health_check_interval_s: float = 10.0

    def __post_init__(self) -> None:
        chosen = [n for n in ("url", "sentinel", "cluster") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise InvalidInputError(
                f"redis needs exactly one of url / sentinel / cluster, got {chosen or 'none'}"
            )
        if self.url is not None and not self.url.startswith(
            ("redis://", "rediss://", "unix://", "redis+sentinel://")
        ):
            raise InvalidInputError(
                "redis.url must start with redis://, rediss://, unix:// or redis+sentinel://"
            )
        if isinstance(self.replicas, bool) or self.replicas < 0:
            raise InvalidInputError(f"redis.replicas must be >= 0, got {self.replicas!r}")
        if self.durability == "replicated" and self.replicas < 1:
            raise InvalidInputError("redis.replicas must be >= 1 with durability: replicated")
        _positive(self.wait_timeout_ms, "redis.wait_timeout_ms")
        _positive(self.socket_timeout_s, "redis.socket_timeout_s")
        _positive(self.connect_timeout_s, "redis.connect_timeout_s")
        _positive(self.health_check_interval_s, "redis.health_check_interval_s")

    def __repr__(self) -> str:
        # A URL may carry a password: never show it (reprs end up in logs).
        from ._connection import redact

        shown = ", ".join(
            f"{name}={redact(value) if name == 'url' and value else value!r}"
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not None
        )
        return f"RedisSettings({shown})"

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


class StorageConfig(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``storage:`` block; see the README for every field."""

    type: Literal["redis", "memory"] = "memory"
    namespace: str = "default"
    redis: RedisSettings | None = None
    tasks: TaskSettings = msgspec.field(default_factory=TaskSettings)
    events_maxlen: int = 100_000
    history_maxlen: int = 1_000
    block_window: int = 10_000
    processed_ttl_s: float = 604_800.0

    def __post_init__(self) -> None:
        v.namespace(self.namespace)
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
            raise InvalidInputError(f"cannot read storage config {str(path)!r}: {exc}") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("storage"), Mapping):
            raise InvalidInputError(f"{str(path)!r} has no top-level 'storage:' mapping")
        return cls.from_dict(doc["storage"])

    @classmethod
    def from_string(cls, value: str) -> StorageConfig:
        """``"memory"`` or a Redis URL."""
        if value == "memory":
            return cls(type="memory")
        if "://" not in value:
            raise InvalidInputError(f"store must be 'memory' or a Redis URL, got {value!r}")
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
