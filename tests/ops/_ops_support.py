"""Builders shared by the tests of ponos_redis.ops (a unique module name: test
folders are not packages)."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import redis.asyncio as aioredis

from ponos_redis import (
    AggregatorStore,
    AvsConfig,
    BlockRecord,
    Consensus,
    ConsensusType,
    CurveType,
    DeploymentStatus,
    EnvironmentVar,
    ExecutorStore,
    OperatorSetTaskConfig,
    StorageConfig,
)
from ponos_redis.keys import Keys
from ponos_redis.ops import read_file
from ponos_redis.ops._format import Export, ProcessedLine
from ponos_redis.testing import AVS, make_deployment, make_inflight, make_performer, make_task

__all__ = [
    "AVS",
    "Pair",
    "PairFactory",
    "fresh_namespace",
    "make_task",
    "populate",
    "raw_snapshot",
    "records",
    "redis_config",
    "rewrite",
]

Pair = tuple[AggregatorStore, ExecutorStore]
PairFactory = Callable[..., Awaitable[Pair]]


def fresh_namespace(tag: str = "ops") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def redis_config(url: str, namespace: str, **top: Any) -> StorageConfig:
    return StorageConfig.from_dict(
        {"type": "redis", "namespace": namespace, "redis": {"url": url, "durability": "none"}, **top}
    )


async def populate(agg: AggregatorStore, exe: ExecutorStore, *, tasks: int = 12) -> dict[str, Any]:
    """Every kind of record an export holds, with tasks in every status."""
    await agg.save_tasks(
        [make_task(f"t-{i:02d}", block_number=100 + i, payload=bytes([i, 0, 255])) for i in range(tasks)]
    )
    await agg.save_task(make_task("t-deadline", deadline=agg_now_plus(3600), chain_id=7, block_number=5))
    claimed = {c.task.task_id: c for c in await agg.claim_tasks("replica-1", limit=5, lease_s=60)}
    await agg.complete_task("t-00", claimed["t-00"].token)
    await agg.fail_task("t-01", claimed["t-01"].token, "boom")
    await agg.fail_task("t-02", claimed["t-02"].token, "again", retry=True)
    await agg.release_task("t-03", claimed["t-03"].token)
    # t-04 stays processing, with its lease and token
    lease = await agg.acquire_chain_lease(1, "poller-1", ttl_s=60)
    assert lease is not None
    await agg.set_last_processed_block(1, 111, fence=lease.token)
    await agg.set_last_processed_block(7, 5)
    for number in (110, 111):
        await agg.save_block(
            BlockRecord(
                chain_id=1, number=number, hash=f"0x{number:064x}", parent_hash="0xp", timestamp=number
            )
        )
    await agg.save_operator_set_config(
        AVS,
        1,
        OperatorSetTaskConfig(
            task_sla_s=30.5,
            curve_type=CurveType.BN254,
            task_metadata=b"\x00meta\xff",
            consensus=Consensus(type=ConsensusType.STAKE_PROPORTION_THRESHOLD, threshold=6667),
        ),
    )
    await agg.save_avs_config(
        AVS,
        AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[1, 2], curve_type=CurveType.ECDSA),
    )
    await exe.save_performer_state(
        make_performer(
            "perf-1", environment_vars=[EnvironmentVar(name="A", value="1")], container_healthy=True
        )
    )
    await exe.save_inflight_task(make_inflight("inflight-1", aggregator_address="agg:1", operator_set_id=3))
    await exe.save_deployment(make_deployment("dep-1"))
    await exe.update_deployment_status("dep-1", DeploymentStatus.DEPLOYING)
    await exe.update_deployment_status("dep-1", DeploymentStatus.FAILED, error="pull failed")
    await exe.mark_task_processed("x-1")
    return {"claimed": claimed, "lease": lease}


def agg_now_plus(seconds: float) -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC) + timedelta(seconds=seconds)


def records(data: bytes | Export) -> dict[tuple[str, str], Any]:
    """An export's records by identity, with what changes by itself (a marker's ttl) left out."""
    from ponos_redis.ops._format import record_key

    export = data if isinstance(data, Export) else read_file(io.BytesIO(data))
    found: dict[tuple[str, str], Any] = {}
    for record in export.records:
        if isinstance(record, ProcessedLine):
            record = msgspec.structs.replace(record, ttl_ms=0)
        found[record_key(record)] = record
    return found


def rewrite(data: bytes, change: Callable[[list[dict[str, Any]]], None]) -> bytes:
    """An export changed by ``change`` (on its decoded lines, end line excluded), checksum redone."""
    lines = [msgspec.json.decode(line) for line in data.splitlines()]
    body = lines[:-1]
    change(body)
    encoded = [msgspec.json.encode(line) + b"\n" for line in body]
    digest = hashlib.sha256(b"".join(encoded)).hexdigest()
    end = {"type": "end", "records": len(encoded) - 1, "sha256": digest, "skipped": 0}
    return b"".join(encoded) + msgspec.json.encode(end) + b"\n"


async def raw_snapshot(raw: aioredis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of a namespace with its value, read by type (stream ids included)."""
    snapshot: dict[bytes, Any] = {}
    async for key in raw.scan_iter(match=Keys(namespace).pattern, count=1000):
        kind = await raw.type(key)
        if kind == b"hash":
            snapshot[key] = await raw.hgetall(key)
        elif kind == b"zset":
            snapshot[key] = await raw.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            snapshot[key] = await raw.xrange(key)
        else:
            snapshot[key] = await raw.get(key)
    return snapshot
