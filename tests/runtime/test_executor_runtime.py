"""ExecutorRuntime on the fake executor store: de-duplication, recovery, deployments."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from _runtime_support import FlakyStore, run_virtual

from ponos_redis import (
    DeploymentStatus,
    InflightTask,
    ManualClock,
    MemoryExecutorStore,
    NotFoundError,
    Task,
)
from ponos_redis.runtime import INFLIGHT_INTERRUPTED, ExecutorRuntime, RetryPolicy, RuntimeEvent
from ponos_redis.testing import AVS, OPERATOR, make_task

AGGREGATOR = "aggregator-1"
AVS_B = "0x" + "cd" * 20


class Performer:
    """A fake performer: the result is a hash of the payload; counts its runs."""

    def __init__(self, *, work_s: float = 0.5, fail: bool = False) -> None:
        self.runs: list[str] = []
        self.work_s = work_s
        self.fail = fail

    async def __call__(self, task: Task) -> bytes:
        self.runs.append(task.task_id)
        await asyncio.sleep(self.work_s)
        if self.fail:
            raise RuntimeError("performer crashed")
        return hashlib.sha256(task.payload).digest()


def test_a_redelivered_task_is_not_executed_again(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryExecutorStore(namespace, clock=clock)
        performer = Performer()
        runtime = ExecutorRuntime(store, OPERATOR, performer=performer, clock=clock)
        task = make_task("t1")
        result, executed = await runtime.handle(task, aggregator_address=AGGREGATOR)
        assert executed
        assert result == hashlib.sha256(task.payload).digest()
        assert await store.list_inflight_tasks() == []
        assert await runtime.handle(task, aggregator_address=AGGREGATOR) == (result, False)
        # another process of the same operator (no result cache): still not executed
        other = ExecutorRuntime(store, OPERATOR, performer=performer, clock=clock)
        assert await other.handle(task, aggregator_address=AGGREGATOR) == (b"", False)
        recompute = ExecutorRuntime(
            store, OPERATOR, performer=performer, duplicate_result=_digest, clock=clock
        )
        assert await recompute.handle(task, aggregator_address=AGGREGATOR) == (result, False)
        assert performer.runs == ["t1"]
        assert (runtime.executed, runtime.deduplicated) == (1, 1)

    run_virtual(main)


def test_concurrent_deliveries_execute_once_and_share_the_result(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryExecutorStore(namespace, clock=clock)
        performer = Performer(work_s=2)
        runtime = ExecutorRuntime(store, OPERATOR, performer=performer, clock=clock)
        task = make_task("t1")
        answers = await asyncio.gather(
            *(runtime.handle(task, aggregator_address=AGGREGATOR) for _ in range(5))
        )
        assert performer.runs == ["t1"]
        assert sorted(executed for _, executed in answers) == [False] * 4 + [True]
        assert {result for result, _ in answers} == {hashlib.sha256(task.payload).digest()}
        assert runtime.deduplicated == 4

    run_virtual(main)


def test_an_inflight_task_is_recovered_after_a_restart(namespace: str) -> None:
    """The process died while the performer ran: the task is marked processed and
    still inflight. After a restart, recover() lists it; the aggregator's
    redelivery executes it once more; later deliveries are duplicates."""

    async def main(clock: ManualClock) -> None:
        store = MemoryExecutorStore(namespace, clock=clock)
        task = make_task("t1")
        # what a killed process leaves behind
        assert await store.mark_task_processed("t1")
        await store.save_inflight_task(
            InflightTask(
                task_id="t1",
                avs_address=AVS,
                operator_address=OPERATOR,
                received_at=clock(),
                status="running",
                aggregator_address=AGGREGATOR,
            )
        )
        # and someone else's inflight record, left alone
        other_operator = "0x" + "99" * 20
        await store.save_inflight_task(
            InflightTask(task_id="t9", avs_address=AVS, operator_address=other_operator, received_at=clock())
        )
        performer = Performer()
        restarted = ExecutorRuntime(store, OPERATOR, performer=performer, clock=clock)
        [interrupted] = await restarted.recover()
        assert (interrupted.task_id, interrupted.status) == ("t1", INFLIGHT_INTERRUPTED)
        assert (await store.get_inflight_task("t1")).status == INFLIGHT_INTERRUPTED
        result, executed = await restarted.handle(task, aggregator_address=AGGREGATOR)
        assert executed
        assert result == hashlib.sha256(task.payload).digest()
        assert restarted.reexecuted == 1
        with pytest.raises(NotFoundError):
            await store.get_inflight_task("t1")
        assert await restarted.handle(task, aggregator_address=AGGREGATOR) == (result, False)
        assert performer.runs == ["t1"]
        assert (await store.get_inflight_task("t9")).status == ""
        assert await restarted.recover() == []

    run_virtual(main)


def test_a_cancelled_execution_is_left_interrupted(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryExecutorStore(namespace, clock=clock)
        performer = Performer(work_s=100)
        runtime = ExecutorRuntime(store, OPERATOR, performer=performer, clock=clock)
        handling = asyncio.create_task(runtime.handle(make_task("t1"), aggregator_address=AGGREGATOR))
        await asyncio.sleep(1)
        assert (await store.get_inflight_task("t1")).status == "running"
        handling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handling
        assert (await store.get_inflight_task("t1")).status == INFLIGHT_INTERRUPTED
        performer.work_s = 0
        assert (await runtime.handle(make_task("t1"), aggregator_address=AGGREGATOR))[1] is True
        assert performer.runs == ["t1", "t1"]

    run_virtual(main)


def test_a_failed_execution_is_final(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryExecutorStore(namespace, clock=clock)
        performer = Performer(fail=True)
        runtime = ExecutorRuntime(store, OPERATOR, performer=performer, clock=clock)
        with pytest.raises(RuntimeError, match="performer crashed"):
            await runtime.handle(make_task("t1"), aggregator_address=AGGREGATOR)
        assert await store.list_inflight_tasks() == []
        assert await runtime.handle(make_task("t1"), aggregator_address=AGGREGATOR) == (b"", False)
        assert (runtime.failed, runtime.deduplicated, len(performer.runs)) == (1, 1, 1)

    run_virtual(main)


def test_an_ambiguous_mark_is_executed(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        flaky = FlakyStore(MemoryExecutorStore(namespace, clock=clock))
        flaky.fail_after["mark_task_processed"] = 1  # applied, reply lost
        performer = Performer()
        runtime = ExecutorRuntime(
            flaky, OPERATOR, performer=performer, clock=clock, retry=RetryPolicy(base_backoff_s=0.01)
        )
        _, executed = await runtime.handle(make_task("t1"), aggregator_address=AGGREGATOR)
        assert executed
        assert runtime.ambiguous == 1
        assert flaky.calls["mark_task_processed"] == 2

    run_virtual(main)


def test_deploy_performers_records_state_and_history(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        store = MemoryExecutorStore(namespace, clock=clock)
        runtime = ExecutorRuntime(store, OPERATOR, performer=Performer(), clock=clock)
        states = await runtime.deploy_performers([AVS, AVS_B.upper().replace("0X", "0x")])
        assert [s.avs_address for s in states] == [AVS, AVS_B]
        assert await store.list_performer_states() == sorted(states, key=lambda s: s.performer_id)
        assert all(s.container_healthy and s.status == "running" for s in states)
        for state in states:
            deployment_id = state.resource_id.removeprefix("fake-")
            deployment = await store.get_deployment(deployment_id)
            assert deployment.status == DeploymentStatus.RUNNING
            assert deployment.completed_at is not None
            history = await store.list_deployment_history(deployment_id)
            assert [e.status for e in history] == [
                DeploymentStatus.PENDING,
                DeploymentStatus.DEPLOYING,
                DeploymentStatus.RUNNING,
            ]
        # a restart deploys again: a new deployment, the same performer ids
        again = await runtime.deploy_performers([AVS])
        assert again[0].performer_id == states[0].performer_id
        assert len(await store.list_performer_states()) == 2

    run_virtual(main)


def test_a_failed_deployment_is_recorded(namespace: str) -> None:
    async def main(clock: ManualClock) -> None:
        flaky = FlakyStore(MemoryExecutorStore(namespace, clock=clock))
        flaky.raise_on["save_performer_state"] = RuntimeError("no container")
        events: list[RuntimeEvent] = []
        runtime = ExecutorRuntime(flaky, OPERATOR, performer=Performer(), clock=clock, on_event=events.append)
        with pytest.raises(RuntimeError, match="no container"):
            await runtime.deploy_performers([AVS])
        assert await flaky.list_performer_states() == []
        [dep_id] = [e.detail for e in events if e.kind == "deploy_failed"]
        deployment = await flaky.get_deployment(dep_id)
        assert deployment.status == DeploymentStatus.FAILED
        assert "no container" in deployment.error

    run_virtual(main)


async def _digest(task: Task) -> bytes:
    return hashlib.sha256(task.payload).digest()
