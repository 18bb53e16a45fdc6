"""``ponos-redis namespace create`` makes a namespace deliberately (for configs with
``create_namespace: false``), and ``doctor`` reports task records set aside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ponos_redis import NamespaceLostError, StorageConfig
from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.testing import make_task

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("ponos-redis")
    env = {**os.environ, "COLUMNS": "250"}  # wide enough for a namespace's key names
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=30, check=False, env=env
    )


def _config_file(tmp_path: object, url: str, namespace: str) -> str:
    path = tmp_path / "ponos.yaml"  # type: ignore[operator]
    path.write_text(
        f"storage:\n  namespace: {namespace}\n  create_namespace: false\n  redis:\n    url: {url}\n"
        "    durability: none\n"
    )
    return str(path)


async def test_namespace_create_then_stores_open(
    tmp_path: object, redis_url: str, redis_namespace: str
) -> None:
    config = _config_file(tmp_path, redis_url, redis_namespace)
    with pytest.raises(NamespaceLostError, match="does not exist"):
        await RedisAggregatorStore.open(StorageConfig.from_yaml(config))
    first = _cli("namespace", "create", "--store", config)
    assert first.returncode == 0, first.stderr
    assert "created namespace" in first.stdout
    second = _cli("namespace", "create", "--store", config)
    assert second.returncode == 0, second.stderr
    assert "exists" in second.stdout
    epoch = first.stdout.rsplit("epoch ", 1)[1].strip(")\n ")
    async with await RedisAggregatorStore.open(StorageConfig.from_yaml(config)) as store:
        assert store.epoch == epoch


async def test_doctor_reports_a_set_aside_task(redis_url: str, redis_namespace: str) -> None:
    store = await RedisAggregatorStore.open(
        StorageConfig.from_dict(
            {"namespace": redis_namespace, "redis": {"url": redis_url, "durability": "none"}}
        )
    )
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await store.save_tasks([make_task("t-bad"), make_task("t-good")])
        await raw.hset(store.keys.task("t-bad"), "chain_id", "oops")
        assert [c.task.task_id for c in await store.claim_tasks("r", limit=5, lease_s=30)] == ["t-good"]
    finally:
        await raw.aclose()
        await store.close()
    url_config = ["--store", redis_url, "--namespace", redis_namespace]
    result = _cli("doctor", *url_config)
    assert "t-bad" in result.stdout
    assert "set aside" in result.stdout
    assert result.returncode == 1
