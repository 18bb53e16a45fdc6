"""Builders and small helpers shared by the contract suite.

Everything here goes through the public store API only, so the same helpers
work against every backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ponos_redis import (
    AggregatorStore,
    ClaimedTask,
    Deployment,
    DeploymentStatus,
    ExecutorStore,
    InflightTask,
    PerformerState,
    StoreEvent,
    Task,
    TaskRecord,
    TaskStatus,
)

AggregatorFactory = Callable[..., Awaitable[AggregatorStore]]
ExecutorFactory = Callable[..., Awaitable[ExecutorStore]]

# ManualClock's default start.
START = datetime(2026, 1, 1, tzinfo=UTC)

AVS_A = "0x" + "ab" * 20
AVS_B = "0x" + "cd" * 20
OPERATOR = "0x" + "12" * 20

# Every status, and every task status a token-carrying operation can be tried from.
TASK_STATUSES = list(TaskStatus)
DEPLOYMENT_STATUSES = list(DeploymentStatus)

# A generous bound for anything awaited in a test; nothing should come close.
TIMEOUT_S = 5.0


def make_task(task_id: str = "task-1", **fields: Any) -> Task:
    """A valid task; any field can be overridden."""
    values: dict[str, Any] = {
        "task_id": task_id,
        "avs_address": AVS_A,
        "operator_set_id": 1,
        "chain_id": 1,
        "block_number": 100,
        "block_hash": "0x" + "00" * 32,
        "callback_address": "0xCallBack",
        "deadline": None,
        "threshold_bips": 6667,
        "payload": b"payload",
    }
    values.update(fields)
    return Task(**values)


def make_tasks(n: int, prefix: str = "task", **fields: Any) -> list[Task]:
    return [make_task(f"{prefix}-{i:04d}", **fields) for i in range(n)]


def make_performer(performer_id: str = "perf-1", **fields: Any) -> PerformerState:
    values: dict[str, Any] = {
        "performer_id": performer_id,
        "avs_address": AVS_A,
        "created_at": START,
    }
    values.update(fields)
    return PerformerState(**values)


def make_inflight(task_id: str = "inflight-1", **fields: Any) -> InflightTask:
    values: dict[str, Any] = {
        "task_id": task_id,
        "avs_address": AVS_A,
        "operator_address": OPERATOR,
        "received_at": START,
    }
    values.update(fields)
    return InflightTask(**values)


def make_deployment(deployment_id: str = "dep-1", **fields: Any) -> Deployment:
    values: dict[str, Any] = {
        "deployment_id": deployment_id,
        "avs_address": AVS_A,
        "artifact_registry": "registry.example/avs",
        "artifact_digest": "sha256:" + "0" * 64,
        "started_at": START,
    }
    values.update(fields)
    return Deployment(**values)


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
