"""Builders shared by the Redis-only tests (a unique module name: test folders
are not packages, so a second ``_helpers`` would shadow the contract suite's)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from ponos_redis import AggregatorStore, StorageConfig, StoreEvent
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.testing import AVS, OPERATOR, make_inflight, make_performer, make_task, make_tasks

__all__ = ["AVS", "OPERATOR", "make_inflight", "make_performer", "make_task", "make_tasks"]

AVS_MIXED_CASE = "0x" + "aB" * 20

# A generous bound for anything a test waits for; nothing should come close.
TIMEOUT_S = 5.0


async def all_events(store: AggregatorStore) -> list[StoreEvent]:
    return [event async for event in store.events()]


def redis_cli_path() -> str | None:
    return shutil.which("redis-cli")


def redis_cli(url: str, *args: str) -> bytes:
    """Run the real redis-cli against ``url``; its raw (non-tty) output."""
    cli = redis_cli_path()
    assert cli is not None
    done = subprocess.run(
        [cli, "-u", url, "--no-auth-warning", *args],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    assert not done.stderr, done.stderr
    return done.stdout


def cli_lines(output: bytes) -> list[bytes]:
    """redis-cli prints one reply element per line when stdout is not a terminal."""
    assert output.endswith(b"\n"), output
    return output[:-1].split(b"\n")


class Stores:
    """Opens Redis stores (real clock unless one is given); all closed after the test."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.opened: list[RedisAggregatorStore | RedisExecutorStore] = []

    def config(
        self, *, namespace: str | None = None, tasks: dict[str, Any] | None = None, **top: Any
    ) -> StorageConfig:
        redis = {"url": self.url, "durability": "none", **top.pop("redis", {})}
        return StorageConfig.from_dict(
            {
                "type": "redis",
                "namespace": namespace or self.namespace,
                "redis": redis,
                "tasks": tasks or {},
                **top,
            }
        )

    async def aggregator(self, **options: Any) -> RedisAggregatorStore:
        clock = options.pop("clock", None)
        store = await RedisAggregatorStore.open(self.config(**options), clock=clock)
        self.opened.append(store)
        return store

    async def executor(self, **options: Any) -> RedisExecutorStore:
        clock = options.pop("clock", None)
        store = await RedisExecutorStore.open(self.config(**options), clock=clock)
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.close()
