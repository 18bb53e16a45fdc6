"""The fake drops expired de-dup markers, as Redis expires their keys: its
marker storage holds only live markers (and a bounded backlog), however many
task ids an executor marks over its life."""

from __future__ import annotations

from ponos_redis import ManualClock
from ponos_redis.backends.memory import MemoryExecutorStore, reset_memory_namespaces

NAMESPACE = "unit-memory-markers"


async def test_an_expired_marker_is_dropped_from_storage() -> None:
    reset_memory_namespaces(NAMESPACE)
    clock = ManualClock()
    store = MemoryExecutorStore(NAMESPACE, clock=clock, processed_ttl_s=60)
    assert await store.mark_task_processed("t1") is True
    clock.advance(61)
    assert await store.is_task_processed("t1") is False
    assert await store.mark_task_processed("t2") is True
    assert "t1" not in store._s.processed
    assert await store.mark_task_processed("t1") is True
    assert await store.is_task_processed("t1") is True
    await store.close()
    reset_memory_namespaces(NAMESPACE)


async def test_marker_storage_stays_bounded_by_the_live_markers() -> None:
    reset_memory_namespaces(NAMESPACE)
    clock = ManualClock()
    store = MemoryExecutorStore(NAMESPACE, clock=clock, processed_ttl_s=10)
    for generation in range(5):
        for i in range(1000):
            assert await store.mark_task_processed(f"g{generation}-{i}") is True
        clock.advance(11)  # this generation's markers expire
    # Each mark dropped expired markers of the generation before: only the last is kept.
    assert len(store._s.processed) == 1000
    assert len(store._s.processed_expiry) == 1000
    assert all(key.startswith("g4-") for key in store._s.processed)
    # A marker set again after it expired is kept under its new expiry.
    assert await store.mark_task_processed("g4-0") is True
    clock.advance(5)
    for i in range(10):
        await store.mark_task_processed(f"more-{i}")
    assert await store.is_task_processed("g4-0") is True
    await store.close()
    reset_memory_namespaces(NAMESPACE)
