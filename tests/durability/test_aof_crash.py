"""A Redis process crash (SIGKILL) under load loses no acknowledged write, and a
store opened while the restarted server still loads its AOF waits for it.

The server runs from docker/redis.conf (appendonly yes, appendfsync always),
overriding only bind, port and dir. A process kill cannot tell ``always`` from
``everysec`` (the write reaches the kernel before the reply either way); the
fsync setting is checked by configuration (test_policy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ponos_redis import (
    StorageConfig,
    StoreUnavailableError,
    Task,
    TaskStatus,
    open_aggregator_store,
)
from ponos_redis._redis_server import RedisServer
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.testing import make_task

pytestmark = pytest.mark.redis_only

REDIS_CONF = Path(__file__).resolve().parents[2] / "docker" / "redis.conf"
WRITERS = 4
RUN_S = 3.0  # each writer's whole run, kill and restart included
KILL_AFTER_S = 0.6
DOWN_S = 0.5


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(conf_file=REDIS_CONF) as srv:
        yield srv


def config(url: str, namespace: str) -> StorageConfig:
    return StorageConfig.from_dict(
        {
            "namespace": namespace,
            # strict: the shipped config must satisfy the aof promise, or opening fails
            "redis": {
                "url": url,
                "durability": "aof",
                "strict": True,
                # everything else as a user gets it: the default retry budget rides through the restart
            },
        }
    )


def task(i: int, writer: int) -> Task:
    return make_task(f"w{writer}-t{i}", chain_id=17000, block_number=i, payload=f"{writer}:{i}".encode())


@dataclass
class Ledger:
    saved: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    marked: set[str] = field(default_factory=set)
    unknown: int = 0
    ops: int = 0


async def writer(
    store: RedisAggregatorStore, executor: RedisExecutorStore, n: int, ledger: Ledger, stop_at: float
) -> None:
    """Save, claim and complete, and mark processed, recording what was acknowledged."""
    for i in range(100_000):
        if time.monotonic() > stop_at:
            return
        t = task(i, n)
        try:
            await store.save_task(t)
            ledger.saved.add(t.task_id)
            for claimed in await store.claim_tasks(f"writer-{n}", limit=1, lease_s=60):
                await store.complete_task(claimed.task.task_id, claimed.token)
                ledger.completed.add(claimed.task.task_id)
            if await executor.mark_task_processed(t.task_id):
                ledger.marked.add(t.task_id)
            ledger.ops += 1
        except StoreUnavailableError:
            ledger.unknown += 1  # the outcome of that call is unknown; not counted as acknowledged


async def test_sigkill_mid_stream_loses_no_acknowledged_write(
    server: RedisServer, redis_namespace: str
) -> None:
    cfg = config(server.url, redis_namespace)
    stores = [await RedisAggregatorStore.open(cfg) for _ in range(2)]
    executor = await RedisExecutorStore.open(cfg)
    ledger = Ledger()
    stop_at = time.monotonic() + RUN_S
    try:
        writers = [
            asyncio.create_task(writer(stores[n % 2], executor, n, ledger, stop_at)) for n in range(WRITERS)
        ]
        await asyncio.sleep(KILL_AFTER_S)
        before_kill = ledger.ops
        server.kill()
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(server.restart)
        await asyncio.wait_for(asyncio.gather(*writers), timeout=RUN_S + 30)
        after = ledger.ops

        print(
            f"\naof crash: {before_kill} ops before the kill, {after} in all, "
            f"{ledger.unknown} unknown outcomes, {len(ledger.saved)} saves / "
            f"{len(ledger.completed)} completions / {len(ledger.marked)} marks checked"
        )
        assert before_kill > 0, "no write was acknowledged before the kill"
        assert ledger.unknown == 0, "the default retry budget rides through the restart"
        assert after > before_kill, "the stores did not carry on after the restart"

        store = stores[0]
        counts = await store.count_tasks()
        for task_id in ledger.saved:
            record = await store.get_task(task_id)
            assert record.task.task_id == task_id
        for task_id in ledger.completed:
            assert (await store.get_task(task_id)).status == TaskStatus.COMPLETED
        for task_id in ledger.marked:
            assert await executor.is_task_processed(task_id)
        # every task is exactly in one status index; nothing was double counted
        assert sum(counts.values()) >= len(ledger.saved)
        assert counts[TaskStatus.COMPLETED] >= len(ledger.completed)
    finally:
        for s in stores:
            await s.close()
        await executor.close()


LOAD_TASKS = 100_000
LOAD_RESTARTS = 4
MAX_POLLS = 5000  # polls for "the server answers LOADING" after each restart, every 2 ms
POLL_BOUND_S = 10.0


async def _first_answer(port: int) -> str:
    """Poll the restarting server until it answers: "loading" (LOADING) or "ready" (PONG)."""
    client = aioredis.Redis(
        port=port, socket_connect_timeout=0.1, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    deadline = time.monotonic() + POLL_BOUND_S
    try:
        for _ in range(MAX_POLLS):
            try:
                await client.ping()
                return "ready"
            except redis.BusyLoadingError:
                return "loading"
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.002)
        pytest.fail(f"the restarted server did not answer within {POLL_BOUND_S} s")
    finally:
        await client.aclose()


async def test_open_while_the_aof_is_loading(
    server: RedisServer, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """LOAD_TASKS tasks in the AOF; after each SIGKILL and restart a store is opened (with the
    config a plain URL gives: every default) as soon as the server answers LOADING. Each open
    waits for the load, retrying LOADING, and sees every task."""
    async with open_aggregator_store(server.url, namespace=redis_namespace) as store:
        for start in range(0, LOAD_TASKS, 1000):
            await store.save_tasks([task(i, 0) for i in range(start, start + 1000)])
    results = []
    for _ in range(LOAD_RESTARTS):
        server.kill()
        caplog.clear()
        restarting = asyncio.create_task(asyncio.to_thread(server.start, 60.0))
        try:
            answer = await _first_answer(server.port)
            t_open = time.monotonic()
            async with open_aggregator_store(server.url, namespace=redis_namespace) as store:
                opened_s = time.monotonic() - t_open
                counts = await store.count_tasks()
        finally:
            await restarting
        waited = sum("BusyLoadingError" in r.getMessage() for r in caplog.records)
        results.append((answer, opened_s, waited))
        assert counts[TaskStatus.PENDING] == LOAD_TASKS
    print(
        f"\naof load: {LOAD_TASKS} tasks; per restart (first answer, open took s, LOADING retries): "
        + ", ".join(f"({a}, {s:.2f}, {w})" for a, s, w in results)
    )
    assert any(answer == "loading" and waited > 0 for answer, _, waited in results), (
        "no open met the load: the test did not test it"
    )


def test_torn_aof_tail_is_truncated_on_load(server: RedisServer) -> None:
    """A torn last record (a crash mid-write) is dropped at load with aof-load-truncated yes."""
    client = redis.Redis(port=server.port)
    for i in range(50):
        client.set(f"k{i}", i)
    client.close()
    server.kill()
    aof_dir = server.dir / "appendonlydir"
    incr = sorted(aof_dir.glob("*.incr.aof"))[-1]
    with incr.open("ab") as f:
        f.write(b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$10\r\nhalf")  # cut mid-value
    manifest = next(aof_dir.glob("*.manifest"))
    check = subprocess.run(["redis-check-aof", str(manifest)], capture_output=True, text=True, timeout=30)
    assert check.returncode != 0, "redis-check-aof should report the torn record"
    server.restart()
    client = redis.Redis(port=server.port)
    with contextlib.closing(client):
        assert [client.get(f"k{i}") for i in range(50)] == [str(i).encode() for i in range(50)]
        assert client.get("torn") is None
    log = server.log_path.read_text(errors="replace")
    assert "Truncat" in log or "truncat" in log
