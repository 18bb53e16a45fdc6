"""A small model-based property: random task operations against a Python model.

The model knows only what the contract says: pending tasks are listed and
claimed in save order (a task that comes back to pending keeps its place),
claims count attempts, retries and reaps fail a task once attempts reach
max_attempts, and counts follow the statuses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from _helpers import AggregatorFactory, make_task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponos_redis import ManualClock, StaleLeaseError, TaskStatus

MAX_ATTEMPTS = 2
LEASE_S = 10.0

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(1, 3)),
        st.tuples(st.just("claim"), st.integers(0, 3)),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("complete"), st.integers(0, 5)),
        st.tuples(st.just("fail"), st.integers(0, 5)),
        st.tuples(st.just("retry"), st.integers(0, 5)),
        st.tuples(st.just("stale"), st.integers(0, 5)),
        st.tuples(st.just("expire"), st.just(0)),
    ),
    min_size=10,
    max_size=40,
)

_examples = itertools.count()


@dataclass
class Model:
    order: dict[str, int] = field(default_factory=dict)  # save position
    status: dict[str, TaskStatus] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # task id -> current token
    old_tokens: list[tuple[str, int]] = field(default_factory=list)

    def pending(self) -> list[str]:
        return sorted(
            (t for t, s in self.status.items() if s == TaskStatus.PENDING), key=self.order.__getitem__
        )

    def counts(self) -> dict[TaskStatus, int]:
        counts = dict.fromkeys(TaskStatus, 0)
        for s in self.status.values():
            counts[s] += 1
        return counts

    def back_or_failed(self, task_id: str) -> None:
        del self.held[task_id]
        ok = self.attempts[task_id] < MAX_ATTEMPTS
        self.status[task_id] = TaskStatus.PENDING if ok else TaskStatus.FAILED


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
async def test_random_operations_follow_the_model(
    make_aggregator: AggregatorFactory, clock: ManualClock, namespace: str, ops: list[tuple[str, int]]
) -> None:
    store = await make_aggregator(namespace=f"{namespace}-m{next(_examples)}", max_attempts=MAX_ATTEMPTS)
    model = Model()
    saved = itertools.count()
    try:
        for op, arg in ops:
            held = sorted(model.held)
            if op == "save":
                batch = [f"t{999 - next(saved):03d}" for _ in range(arg)]  # ids sort against save order
                assert await store.save_tasks([make_task(t) for t in batch]) == arg
                for t in batch:
                    model.order[t] = len(model.order)
                    model.status[t] = TaskStatus.PENDING
                    model.attempts[t] = 0
            elif op == "claim":
                expected = model.pending()[:arg]
                claimed = await store.claim_tasks("w", limit=arg, lease_s=LEASE_S)
                assert [c.task.task_id for c in claimed] == expected
                for c in claimed:
                    model.status[c.task.task_id] = TaskStatus.PROCESSING
                    model.attempts[c.task.task_id] += 1
                    model.held[c.task.task_id] = c.token
                    assert c.attempt == model.attempts[c.task.task_id]
            elif op in {"release", "complete", "fail", "retry"} and held:
                task_id = held[arg % len(held)]
                token = model.held[task_id]
                model.old_tokens.append((task_id, token))
                if op == "release":
                    await store.release_task(task_id, token)
                    del model.held[task_id]
                    model.status[task_id] = TaskStatus.PENDING
                elif op == "complete":
                    await store.complete_task(task_id, token)
                    del model.held[task_id]
                    model.status[task_id] = TaskStatus.COMPLETED
                elif op == "fail":
                    await store.fail_task(task_id, token, "no")
                    del model.held[task_id]
                    model.status[task_id] = TaskStatus.FAILED
                else:
                    await store.fail_task(task_id, token, "again", retry=True)
                    model.back_or_failed(task_id)
            elif op == "stale" and model.old_tokens:
                task_id, token = model.old_tokens[arg % len(model.old_tokens)]
                if model.held.get(task_id) != token:
                    before = await store.get_task(task_id)
                    if before.token != token:
                        try:
                            await store.release_task(task_id, token)
                        except StaleLeaseError:
                            pass
                        else:
                            raise AssertionError("a stale token was accepted")
                        assert await store.get_task(task_id) == before
            elif op == "expire":
                clock.advance(LEASE_S)
                assert await store.reap_expired_leases() == len(model.held)
                for task_id in list(model.held):
                    model.old_tokens.append((task_id, model.held[task_id]))
                    model.back_or_failed(task_id)
            assert [t.task_id for t in await store.list_pending_tasks()] == model.pending()
            assert await store.count_tasks() == model.counts()
        for task_id, status in model.status.items():
            record = await store.get_task(task_id)
            assert record.status == status
            assert record.attempts == model.attempts[task_id]
    finally:
        await store.close()
