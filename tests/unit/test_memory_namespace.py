"""The fake keeps the namespace guard and the token floor of the Redis scripts: a
store whose namespace was reset stops writing, and a new epoch's tokens are above
the old ones."""

from __future__ import annotations

import pytest

from ponos_redis import ManualClock, NamespaceLostError, StaleLeaseError, TaskStatus
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore, reset_memory_namespaces
from ponos_redis.testing import make_performer, make_task


async def test_a_reset_namespace_stops_the_stores_that_were_open() -> None:
    clock = ManualClock()
    holder = MemoryAggregatorStore("lost-ns", clock=clock)
    executor = MemoryExecutorStore("lost-ns", clock=clock)
    await holder.save_task(make_task("x"))
    [stale] = await holder.claim_tasks("replica-a", limit=1, lease_s=60)
    reset_memory_namespaces("lost-ns")

    for call in (
        holder.complete_task("x", stale.token),
        holder.save_task(make_task("y")),
        holder.claim_tasks("replica-a", limit=1, lease_s=60),
        holder.set_last_processed_block(1, 3),
        executor.mark_task_processed("x"),
        executor.save_performer_state(make_performer("p")),
    ):
        with pytest.raises(NamespaceLostError):
            await call
    assert await holder.count_tasks() == dict.fromkeys(TaskStatus, 0)  # reads see the empty namespace

    clock.advance(1)  # losing and re-creating a namespace takes time
    fresh = MemoryAggregatorStore("lost-ns", clock=clock)
    await fresh.save_task(make_task("x"))
    [again] = await fresh.claim_tasks("replica-b", limit=1, lease_s=60)
    assert again.token > stale.token
    with pytest.raises(StaleLeaseError):
        await fresh.complete_task("x", stale.token)
    reset_memory_namespaces("lost-ns")


def test_a_namespace_that_must_exist_is_not_created() -> None:
    with pytest.raises(NamespaceLostError, match="does not exist"):
        MemoryAggregatorStore("never-made", create_namespace=False)
    MemoryAggregatorStore("never-made")
    MemoryExecutorStore("never-made", create_namespace=False)
    reset_memory_namespaces("never-made")
