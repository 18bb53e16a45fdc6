"""Helpers of the high-availability tests (tests/ha): builders, configs, a load that
records what was acknowledged, and server-side counters read behind the stores' back."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ponos_redis import (
    AggregatorStore,
    DurabilityError,
    StorageConfig,
    StoreUnavailableError,
)
from ponos_redis._topology import command
from ponos_redis.testing import AVS, START, make_task

__all__ = ["AVS", "START", "make_task"]

# The only errors a caller of a store under failover may see: the write may or may not
# have been applied (StoreUnavailableError) or was applied but not confirmed on enough
# replicas (DurabilityError). Either is an unknown outcome, never an acknowledgement.
UNKNOWN_OUTCOME = (DurabilityError, StoreUnavailableError)


def needs(*binaries: str) -> pytest.MarkDecorator:
    missing = [b for b in binaries if shutil.which(b) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not on PATH: {', '.join(missing)}")


def storage_config(namespace: str, redis: dict[str, Any], **top: Any) -> StorageConfig:
    return StorageConfig.from_dict({"type": "redis", "namespace": namespace, "redis": redis, **top})


def command_calls(port: int, name: str) -> int:
    """How many times the server on ``port`` ran ``name`` (INFO commandstats)."""
    stats = command(port, "INFO", "commandstats")
    entry = stats.get(f"cmdstat_{name.lower()}")
    return int(entry["calls"]) if entry else 0


def error_count(port: int, code: str) -> int:
    """How many ``code`` error replies (e.g. NOSCRIPT) the server on ``port`` gave (INFO errorstats)."""
    stats = command(port, "INFO", "errorstats")
    entry = stats.get(f"errorstat_{code}")
    return int(entry["count"]) if entry else 0


async def wait_until(what: str, check: Callable[[], bool], bound_s: float, interval: float = 0.01) -> float:
    """Await until ``check()`` is true; returns the seconds it took; fails the test after ``bound_s``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > bound_s:
            pytest.fail(f"{what}: not within {bound_s:.1f} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


@dataclass
class Ledger:
    """What a load acknowledged, and what ended with an unknown outcome."""

    saved: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    # (start, end) in time.monotonic() of every acknowledged write (saves, claims, completions).
    acks: list[tuple[float, float]] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)

    async def write(self, what: str, call: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run one write; (True, result) when acknowledged, (False, None) for an unknown outcome."""
        start = time.monotonic()
        try:
            result = await call()
        except UNKNOWN_OUTCOME as exc:
            self.unknown.append((what, type(exc).__name__))
            return False, None
        self.acks.append((start, time.monotonic()))
        return True, result

    def acks_started_after(self, t: float) -> list[tuple[float, float]]:
        return [a for a in self.acks if a[0] > t]


MAX_ROUNDS = 100_000  # a bound on every load loop; the stop event ends them long before


async def produce(store: AggregatorStore, prefix: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Save batches of new tasks until ``stop``; each batch is one round trip."""
    for batch in range(MAX_ROUNDS):
        if stop.is_set():
            return
        ids = [f"{prefix}-{batch:06d}-{i}" for i in range(4)]
        acked, _ = await ledger.write(
            "save_tasks", lambda ids=ids: store.save_tasks([make_task(t) for t in ids])
        )
        if acked:
            ledger.saved.update(ids)
        await asyncio.sleep(0.01)


async def work(store: AggregatorStore, owner: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Claim and complete tasks until ``stop``."""
    for _ in range(MAX_ROUNDS):
        if stop.is_set():
            return
        acked, claimed = await ledger.write(
            "claim_tasks", lambda: store.claim_tasks(owner, limit=4, lease_s=120)
        )
        if not acked or not claimed:
            await asyncio.sleep(0.01)
            continue
        for c in claimed:
            done, _ = await ledger.write(
                "complete_task", lambda c=c: store.complete_task(c.task.task_id, c.token)
            )
            if done:
                ledger.completed.add(c.task.task_id)
