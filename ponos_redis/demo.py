"""The end-to-end demo: what the stores promise, shown on a live backend.

Three aggregator replicas share one namespace. They claim tasks under leases,
one of them stalls past its lease, the reaper hands its task to another, and
the stalled replica's late completion is refused by its stale fencing token.
A chain lease decides who moves the block cursor; an executor de-duplicates
a task delivered twice. Every step prints what happened.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ._open import open_aggregator_store, open_executor_store
from .config import StorageConfig
from .errors import StaleLeaseError
from .interfaces import AggregatorStore, ExecutorStore
from .models import Task, TaskStatus

__all__ = ["DemoReport", "run_demo"]

AVS = "0x" + "ab" * 20


@dataclass
class DemoReport:
    backend: str
    namespace: str
    saved: int = 0
    completed_by: dict[str, int] = field(default_factory=dict)
    reaped: int = 0
    stale_refused: bool = False
    deadline_failed: int = 0
    cursor: int | None = None
    duplicate_refused: bool = False
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ok: bool = False


def _tasks(n: int, *, expired: int = 0) -> list[Task]:
    now = datetime.now(UTC)
    return [
        Task(
            task_id=f"demo-task-{i:03d}",
            avs_address=AVS,
            operator_set_id=1,
            chain_id=17000,
            block_number=1000 + i,
            block_hash=f"0x{i:064x}",
            callback_address="0x" + "cd" * 20,
            deadline=now - timedelta(seconds=1) if i < expired else now + timedelta(minutes=5),
            threshold_bips=6667,
            payload=f"payload {i}".encode(),
        )
        for i in range(n)
    ]


async def _replica(store: AggregatorStore, name: str, report: DemoReport) -> None:
    for _ in range(100):
        claimed = await store.claim_tasks(name, limit=5, lease_s=30)
        if not claimed:
            return
        for item in claimed:
            await store.complete_task(item.task.task_id, item.token)
            report.completed_by[name] = report.completed_by.get(name, 0) + 1


async def run_demo(config: StorageConfig | str, say: Callable[[str], None] = print) -> DemoReport:
    """Run the demo against ``config`` in a fresh namespace; return what happened."""
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    cfg = StorageConfig.coerce(config)
    backend = "memory (in-process fake)" if cfg.type == "memory" else "redis"
    report = DemoReport(backend=backend, namespace=namespace)
    say(f"backend: {backend}, namespace: {namespace}")

    async with (
        open_aggregator_store(cfg, namespace=namespace) as a,
        open_aggregator_store(cfg, namespace=namespace) as b,
        open_aggregator_store(cfg, namespace=namespace) as c,
    ):
        tasks = _tasks(30, expired=2)
        report.saved = await a.save_tasks(tasks)
        again = await b.save_tasks(tasks)
        say(f"saved {report.saved} tasks in one batch; saving the same batch again created {again}")

        stalled = await c.claim_tasks("replica-c", limit=1, lease_s=0.2)
        say(
            "replica-c claimed "
            + ", ".join(f"{s.task.task_id} (token {s.token})" for s in stalled)
            + " with a 0.2 s lease, then stalls"
        )
        await asyncio.sleep(0.4)
        report.reaped = await a.reap_expired_leases()
        say(f"the reaper returned {report.reaped} expired lease(s) to pending")

        await asyncio.gather(_replica(a, "replica-a", report), _replica(b, "replica-b", report))
        say(f"replicas a and b claimed and completed concurrently: {report.completed_by}")

        if stalled:
            try:
                await c.complete_task(stalled[0].task.task_id, stalled[0].token)
            except StaleLeaseError as exc:
                report.stale_refused = True
                say(f"replica-c wakes up and tries to complete: refused ({exc})")

        counts = await a.count_tasks()
        report.counts = {s.value: n for s, n in counts.items()}
        report.deadline_failed = counts[TaskStatus.FAILED]
        say(f"task counts: {report.counts} (failed: deadline passed before the claim)")

        lease = await a.acquire_chain_lease(17000, "replica-a", ttl_s=10)
        other = await b.acquire_chain_lease(17000, "replica-b", ttl_s=10)
        assert lease is not None
        await a.set_last_processed_block(17000, 1030, fence=lease.token)
        report.cursor = await b.get_last_processed_block(17000)
        say(
            f"chain 17000: replica-a leads (token {lease.token}), replica-b was "
            f"{'refused' if other is None else 'granted'}; cursor at {report.cursor}"
        )
        await a.release_chain_lease(lease)

        report.events = len([e async for e in a.events()])
        say(f"the event stream holds {report.events} events")

    executor: ExecutorStore
    async with open_executor_store(cfg, namespace=namespace) as executor:
        first = await executor.mark_task_processed("demo-task-010")
        second = await executor.mark_task_processed("demo-task-010")
        report.duplicate_refused = first and not second
        say(f"executor: first delivery of demo-task-010 runs ({first}), the duplicate does not ({second})")

    report.ok = (
        report.saved == 30
        and report.reaped == (1 if stalled else 0)
        and sum(report.completed_by.values()) == 28
        and report.stale_refused
        and report.deadline_failed == 2
        and report.cursor == 1030
        and report.duplicate_refused
    )
    say("demo " + ("passed: every promise held" if report.ok else "FAILED: see above"))
    return report
