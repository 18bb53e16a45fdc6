"""Builders and small helpers shared by the contract suite.

Everything here goes through the public store API only, so the same helpers
work against every backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ponos_redis import (
    AggregatorStore,
    ClaimedTask,
    DeploymentStatus,
    ExecutorStore,
    StoreEvent,
    TaskRecord,
    TaskStatus,
)

# Builders shared with users' tests; the contract modules import them from here.
from ponos_redis.testing import (
    AVS,
    OPERATOR,
    START,
    make_deployment,
    make_inflight,
    make_performer,
    make_task,
    make_tasks,
)

__all__ = [
    "AVS_A",
    "AVS_B",
    "OPERATOR",
    "START",
    "make_deployment",
    "make_inflight",
    "make_performer",
    "make_task",
    "make_tasks",
]

AggregatorFactory = Callable[..., Awaitable[AggregatorStore]]
ExecutorFactory = Callable[..., Awaitable[ExecutorStore]]

AVS_A = AVS
AVS_B = "0x" + "cd" * 20

# Every status, and every task status a token-carrying operation can be tried from.
TASK_STATUSES = list(TaskStatus)
DEPLOYMENT_STATUSES = list(DeploymentStatus)

# A generous bound for anything awaited in a test; nothing should come close.
TIMEOUT_S = 5.0


async def collect_events(store: AggregatorStore, *, after: str | None = None) -> list[StoreEvent]:
    """Every event present after ``after`` (non-blocking read), bounded in time."""
    events: list[StoreEvent] = []
    async with asyncio.timeout(TIMEOUT_S):
        async for event in store.events(after=after, block_s=None):
            events.append(event)
            assert len(events) < 100_000, "events() does not end"
    return events


async def last_event_id(store: AggregatorStore) -> str | None:
    events = await collect_events(store)
    return events[-1].id if events else None


async def new_events(store: AggregatorStore, after: str | None) -> list[StoreEvent]:
    return await collect_events(store, after=after)


async def claim_one(
    store: AggregatorStore, task_id: str, *, owner: str = "worker-1", lease_s: float = 30.0
) -> ClaimedTask:
    """Claim exactly one task and check it is the expected one."""
    claimed = await store.claim_tasks(owner, limit=1, lease_s=lease_s)
    assert [c.task.task_id for c in claimed] == [task_id]
    return claimed[0]


async def task_in_status(store: AggregatorStore, status: TaskStatus, task_id: str = "task-1") -> TaskRecord:
    """Save one task (it must be the only pending one) and walk it to ``status``.

    pending tasks come back through a claim and a release, so they carry a
    token; completed and failed tasks keep the token that finished them.
    """
    assert await store.save_task(make_task(task_id))
    claimed = await claim_one(store, task_id)
    if status is TaskStatus.PENDING:
        await store.release_task(task_id, claimed.token)
    elif status is TaskStatus.COMPLETED:
        await store.complete_task(task_id, claimed.token)
    elif status is TaskStatus.FAILED:
        await store.fail_task(task_id, claimed.token, "boom")
    record = await store.get_task(task_id)
    assert record.status == status
    assert record.token is not None
    return record
