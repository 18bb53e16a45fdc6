"""How long export and import take for 100,000 tasks (the figures in docs/operations.md).

A soak test (``--soak``): it saves 100,000 tasks (a fifth of them claimed, so they
carry leases and tokens), exports the namespace to a file, validates the file,
imports it into an empty namespace, imports it again (everything already there),
and prints each time. Its bounds are generous; the figures are what it prints.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _ops_support import fresh_namespace, make_task, redis_config

from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.ops import export_namespace, import_namespace, read_file

pytestmark = [pytest.mark.redis_only, pytest.mark.soak, pytest.mark.timeout(600)]

TASKS = 100_000


async def test_100k_tasks_export_and_import_in_seconds(redis_url: str, tmp_path: Path) -> None:
    src, dst = fresh_namespace("speed-src"), fresh_namespace("speed-dst")
    async with await RedisAggregatorStore.open(redis_config(redis_url, src)) as store:
        await store.save_tasks(
            [make_task(f"task-{i:06d}", block_number=i, payload=b"p" * 64) for i in range(TASKS)]
        )
        await store.claim_tasks("replica-1", limit=TASKS // 5, lease_s=3600)
    file = tmp_path / "export.jsonl"

    started = time.perf_counter()
    exported = await export_namespace(redis_config(redis_url, src), file)
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    export = read_file(file)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    imported = await import_namespace(redis_config(redis_url, dst), export)
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    again = await import_namespace(redis_config(redis_url, dst), export)
    again_s = time.perf_counter() - started

    assert exported.counts["task"] == TASKS
    assert imported.written == TASKS
    assert again.identical == TASKS
    size = file.stat().st_size / 1e6
    print(
        f"\n{TASKS} tasks, {size:.0f} MB: export {export_s:.1f} s, read and validate {read_s:.1f} s, "
        f"import into an empty namespace {import_s:.1f} s, import again (all there) {again_s:.1f} s"
    )
    assert export_s < 60
    assert read_s + import_s < 60
