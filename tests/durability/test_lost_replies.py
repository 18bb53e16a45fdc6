"""A write whose reply was lost was applied anyway; the retry must not apply it twice.

A loopback proxy between the store and Redis forwards a command, then drops
the connection instead of relaying the reply: the store sees a connection
error, retries on a new connection, and the operation's replay detection
must make the outcome the same as one clean call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from ponos_redis import StorageConfig, Task, TaskStatus
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.testing import make_task

pytestmark = pytest.mark.redis_only


class ReplyDroppingProxy:
    """Forwards bytes both ways; when armed, swallows the next reply and cuts the connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed = False
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self.armed:
                        self.armed = False
                        self.dropped += 1
                        break  # the command was applied upstream; its reply is lost
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                for w in (client_w, server_w):
                    w.close()

        for coro in (pump(client_r, server_w, False), pump(server_r, client_w, True)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ReplyDroppingProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    p = ReplyDroppingProxy(port)
    await p.start()
    yield p
    await p.close()


def config(port: int, namespace: str) -> StorageConfig:
    return StorageConfig.from_dict(
        {
            "namespace": namespace,
            "redis": {
                "url": f"redis://127.0.0.1:{port}/0",
                "durability": "none",
                "retry": {"attempts": 4, "max_backoff_ms": 50},
            },
        }
    )


def task(i: int) -> Task:
    return make_task(f"t{i}", block_number=i)


@contextlib.asynccontextmanager
async def stores(proxy: ReplyDroppingProxy, namespace: str) -> AsyncIterator[RedisAggregatorStore]:
    store = await RedisAggregatorStore.open(config(proxy.port, namespace))
    try:
        yield store
    finally:
        await store.close()


async def lose_next_reply(proxy: ReplyDroppingProxy) -> None:
    proxy.armed = True


async def test_save_tasks_retried_after_lost_reply(proxy: ReplyDroppingProxy, redis_namespace: str) -> None:
    async with stores(proxy, redis_namespace) as store:
        await lose_next_reply(proxy)
        created = await store.save_tasks([task(i) for i in range(10)])
        assert proxy.dropped == 1
        assert created == 10
        counts = await store.count_tasks()
        assert counts[TaskStatus.PENDING] == 10
        saved = [e async for e in store.events() if e.kind == "task.saved"]
        assert len(saved) == 10


async def test_claim_retried_after_lost_reply_strands_nothing(
    proxy: ReplyDroppingProxy, redis_namespace: str
) -> None:
    async with stores(proxy, redis_namespace) as store:
        await store.save_tasks([task(i) for i in range(6)])
        await lose_next_reply(proxy)
        claimed = await store.claim_tasks("w", limit=3, lease_s=60)
        assert proxy.dropped == 1
        assert [c.task.task_id for c in claimed] == ["t0", "t1", "t2"]
        counts = await store.count_tasks()
        assert counts[TaskStatus.PROCESSING] == 3  # not 6: the retry did not claim more
        assert counts[TaskStatus.PENDING] == 3
        for c in claimed:
            assert (await store.get_task(c.task.task_id)).token == c.token
            await store.complete_task(c.task.task_id, c.token)


async def test_complete_retried_after_lost_reply(proxy: ReplyDroppingProxy, redis_namespace: str) -> None:
    async with stores(proxy, redis_namespace) as store:
        await store.save_task(task(1))
        (c,) = await store.claim_tasks("w", limit=1, lease_s=60)
        await lose_next_reply(proxy)
        await store.complete_task("t1", c.token)
        assert proxy.dropped == 1
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED
        completions = [e async for e in store.events() if e.kind == "task.completed"]
        assert len(completions) == 1


@pytest.mark.parametrize("op", ["release", "retry", "delete"])
async def test_release_retry_delete_retried_after_lost_reply(
    proxy: ReplyDroppingProxy, redis_namespace: str, op: str
) -> None:
    async with stores(proxy, redis_namespace) as store:
        await store.save_task(task(1))
        (c,) = await store.claim_tasks("w", limit=1, lease_s=60)
        await lose_next_reply(proxy)
        if op == "release":
            await store.release_task("t1", c.token)
        elif op == "retry":
            await store.fail_task("t1", c.token, "flaky", retry=True)
        else:
            await store.delete_task("t1")
        assert proxy.dropped == 1
        if op == "delete":
            assert (await store.count_tasks())[TaskStatus.PENDING] == 0
        else:
            record = await store.get_task("t1")
            assert record.status == TaskStatus.PENDING
            assert record.token is not None
            assert record.token > c.token


async def test_mark_processed_retried_after_lost_reply(
    proxy: ReplyDroppingProxy, redis_namespace: str
) -> None:
    executor = await RedisExecutorStore.open(config(proxy.port, redis_namespace))
    try:
        await lose_next_reply(proxy)
        assert await executor.mark_task_processed("t1") is True  # the first mark, even though retried
        assert proxy.dropped == 1
        assert await executor.mark_task_processed("t1") is False  # a second delivery is a duplicate
    finally:
        await executor.close()
