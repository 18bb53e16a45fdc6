"""The durability policy: what the server must be configured to keep a promise.

``assess`` is pure: given the policy and what the server reported, it lists
what is wrong, each with what to change. The Redis backend gathers the facts
when a store opens and refuses (``strict: true``) or logs a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerFacts", "assess"]

UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServerFacts:
    """What the server said about itself; ``"unknown"`` where it would not say."""

    appendonly: str = UNKNOWN
    appendfsync: str = UNKNOWN
    maxmemory_policy: str = UNKNOWN
    connected_replicas: int | None = None
    min_replicas_to_write: str = UNKNOWN
    cluster: bool = False


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
    if durability == "none":
        return problems
    if facts.appendonly == UNKNOWN:
        problems.append("appendonly is unknown (CONFIG denied?); durability needs appendonly yes")
    elif facts.appendonly != "yes":
        problems.append(
            "appendonly is no: a restart of Redis loses every acknowledged write; set appendonly yes"
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
