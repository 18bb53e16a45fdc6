"""The durability policy: what the server must be configured to keep a promise.

``assess`` is pure: given the policy and what the server reported, it lists
what is wrong, each with what to change. The Redis backend gathers the facts
when a store opens and refuses (``strict: true``) or logs a warning;
``ponos-redis doctor`` gathers the same facts and reports them.

``server_facts`` builds the facts from ``CONFIG GET`` and ``INFO``: where
``CONFIG`` is denied (managed services rename or forbid it), ``INFO`` still
tells ``aof_enabled`` and ``maxmemory_policy`` (``appendfsync`` is then
unknown). ``redis_version_problem`` says why a server is too old: the scripts
need Redis 7 (their ``#!lua`` flags line), whatever the durability policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONFIG_NAMES",
    "MIN_REDIS_VERSION",
    "ServerFacts",
    "assess",
    "redis_version_problem",
    "server_facts",
]

UNKNOWN = "unknown"
MIN_REDIS_VERSION = (7, 0)
# What CONFIG GET is asked for (its names), in the order server_facts reads them.
CONFIG_NAMES = ("appendonly", "appendfsync", "maxmemory-policy", "min-replicas-to-write")


@dataclass(frozen=True)
class ServerFacts:
    """What the server said about itself; ``"unknown"`` where it would not say."""

    appendonly: str = UNKNOWN
    appendfsync: str = UNKNOWN
    maxmemory_policy: str = UNKNOWN
    connected_replicas: int | None = None
    min_replicas_to_write: str = UNKNOWN
    cluster: bool = False
    redis_version: str = UNKNOWN
    aof_last_write_status: str = UNKNOWN


def server_facts(
    config: Mapping[str, str | None], info: Mapping[str, Any] | None, *, cluster: bool = False
) -> ServerFacts:
    """The facts from ``CONFIG GET`` values (None: denied or absent) and an ``INFO``
    reply as redis-py parses it (None: denied); ``INFO`` fills in what ``CONFIG``
    would not say."""
    info = info or {}

    def configured(name: str) -> str | None:
        value = config.get(name)
        return value if value not in (None, "", UNKNOWN) else None

    appendonly = configured("appendonly")
    if appendonly is None and "aof_enabled" in info:
        appendonly = "yes" if str(info["aof_enabled"]) == "1" else "no"
    policy = configured("maxmemory-policy") or info.get("maxmemory_policy")
    replicas = info.get("connected_slaves")
    return ServerFacts(
        appendonly=appendonly or UNKNOWN,
        appendfsync=configured("appendfsync") or UNKNOWN,
        maxmemory_policy=str(policy) if policy else UNKNOWN,
        connected_replicas=None if replicas is None else int(replicas),
        min_replicas_to_write=configured("min-replicas-to-write") or UNKNOWN,
        cluster=cluster,
        redis_version=str(info.get("redis_version", UNKNOWN)),
        aof_last_write_status=str(info.get("aof_last_write_status", UNKNOWN)),
    )


def redis_version_problem(version: str) -> str | None:
    """Why a server of ``version`` cannot run the scripts; None when it can (or is unknown)."""
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None
    if (major, minor) >= MIN_REDIS_VERSION:
        return None
    need = ".".join(map(str, MIN_REDIS_VERSION))
    return (
        f"the server runs Redis {version}; ponos-redis needs Redis {need} or newer "
        "(its scripts declare their keys and flags with a #!lua line): upgrade Redis"
    )


def assess(durability: str, replicas: int, facts: ServerFacts) -> list[str]:
    """Problems that stop the server from keeping ``durability``; empty when it can."""
    problems: list[str] = []
    if facts.maxmemory_policy not in ("noeviction", UNKNOWN):
        problems.append(
            f"maxmemory-policy is {facts.maxmemory_policy}: under memory pressure Redis would evict "
            "task state silently; set maxmemory-policy noeviction"
        )
    elif facts.maxmemory_policy == UNKNOWN and durability != "none":
        problems.append("maxmemory-policy is unknown (CONFIG denied?); it must be noeviction")
    if facts.aof_last_write_status == "err":
        problems.append(
            "the last AOF write failed (aof_last_write_status:err): Redis refuses writes until it "
            "can write its AOF again; check the disk (space, permissions) and the server's log"
        )
    if durability == "none":
        return problems
    if facts.appendonly == UNKNOWN:
        problems.append("appendonly is unknown (CONFIG denied?); durability needs appendonly yes")
    elif facts.appendonly != "yes":
        problems.append(
            "appendonly is no: a restart of Redis loses every acknowledged write; set appendonly yes"
        )
    if durability == "aof" and facts.appendonly == "yes" and facts.appendfsync == UNKNOWN:
        problems.append(
            "appendfsync is unknown (CONFIG denied?; INFO does not say): durability aof needs "
            "appendfsync always, which cannot be confirmed; allow CONFIG GET, or use durability: replicated"
        )
    if durability == "aof" and facts.appendfsync not in ("always", UNKNOWN) and facts.appendonly == "yes":
        problems.append(
            f"appendfsync is {facts.appendfsync}: a crash of the host may lose up to a second of "
            "acknowledged writes; set appendfsync always for zero loss (or use durability: replicated)"
        )
    if durability == "replicated":
        if facts.connected_replicas is None:
            problems.append("the number of connected replicas is unknown")
        elif facts.connected_replicas < replicas:
            problems.append(
                f"{facts.connected_replicas} replica(s) connected, {replicas} required by "
                "durability: replicated; writes will fail their WAIT"
            )
    return problems
