"""The verdict on its own, on the in-process fake: each invariant holds on a clean history
and is reported broken, by name, when its evidence says so. No processes, milliseconds."""

from __future__ import annotations

import uuid

import pytest

from ponos_redis import ManualClock, MemoryAggregatorStore, TaskStatus
from ponos_redis.simulate import INVARIANTS
from ponos_redis.simulate._execlog import CompletionAck
from ponos_redis.simulate._faults import plan_faults
from ponos_redis.simulate._options import SimulationOptions
from ponos_redis.simulate._soak import Sample, judge_flat
from ponos_redis.simulate._verdict import (
    ChainTruth,
    Invariant,
    NamespaceEvidence,
    ReplicaKill,
    collect_evidence,
    judge,
)
from ponos_redis.testing import make_task

CHAIN = 17000


async def history(*, complete: int = 3, leave_pending: int = 0) -> tuple[MemoryAggregatorStore, ChainTruth]:
    """A namespace where tasks t0.. were saved on chain 17000, claimed by replica-1.1 and
    completed, its cursor at block 5, and the chain's truth to match."""
    ns = f"verdict-{uuid.uuid4().hex[:8]}"
    store = MemoryAggregatorStore(ns, clock=ManualClock())
    ids = [f"t{i}" for i in range(complete + leave_pending)]
    await store.save_tasks(
        make_task(task_id, chain_id=CHAIN, block_number=i) for i, task_id in enumerate(ids)
    )
    for claimed in await store.claim_tasks("replica-1.1", limit=complete, lease_s=30):
        await store.complete_task(claimed.task.task_id, claimed.token)
    lease = await store.acquire_chain_lease(CHAIN, "replica-1.1", ttl_s=30)
    assert lease is not None
    await store.set_last_processed_block(CHAIN, 5, fence=lease.token)
    truth = ChainTruth(namespace=ns, chain_id=CHAIN, head=5, canonical=set(ids), orphaned={"gone-1"})
    return store, truth


async def test_a_clean_history_holds_every_invariant() -> None:
    store, truth = await history()
    evidence = await collect_evidence(store, [truth])
    invariants, figures = judge(
        [evidence], [truth], {"executor-1": [("t0", "e1"), ("t1", "e2"), ("t2", "e3")]}
    )
    assert [i.name for i in invariants] == list(INVARIANTS)
    assert all(i.ok for i in invariants), [i.detail for i in invariants]
    assert figures["tasks_created"] == 3
    assert figures["tasks_completed"] == 3
    assert figures["latency_p50_ms"] == 0.0  # the manual clock never moved


async def test_a_task_left_pending_breaks_final_state() -> None:
    store, truth = await history(complete=2, leave_pending=1)
    invariants, _ = judge([await collect_evidence(store, [truth])], [truth], {})
    broken = [i for i in invariants if not i.ok]
    assert [i.name for i in broken] == ["every task created reached a final state"]
    assert "t2: still pending" in broken[0].examples[0]


async def test_a_task_of_the_chain_never_saved_breaks_final_state() -> None:
    store, truth = await history()
    truth.canonical.add("never-saved")
    invariants, _ = judge([await collect_evidence(store, [truth])], [truth], {})
    (broken,) = [i for i in invariants if not i.ok]
    assert broken.name == "every task created reached a final state"
    assert "never-saved: on the chain but no record" in broken.examples[0]


async def test_a_cursor_behind_the_head_is_caught() -> None:
    store, truth = await history()
    truth.head = 9
    invariants, _ = judge([await collect_evidence(store, [truth])], [truth], {})
    (broken,) = [i for i in invariants if not i.ok]
    assert broken.name == "every chain's cursor reached the head"
    assert "cursor 5, head 9" in broken.examples[0]


async def test_a_completed_task_of_an_orphaned_block_is_caught() -> None:
    store, truth = await history()
    truth.canonical.discard("t1")
    truth.orphaned.add("t1")
    invariants, _ = judge([await collect_evidence(store, [truth])], [truth], {})
    (broken,) = [i for i in invariants if not i.ok]
    assert broken.name == "no task of an orphaned block was completed"
    assert "t1" in broken.examples[0]


async def test_two_executions_of_one_task_by_one_executor_are_caught_and_a_replayed_log_write_is_not() -> (
    None
):
    store, truth = await history()
    executions = {
        "executor-1": [("t0", "e1"), ("t0", "e1")],  # one write retried after a lost reply: one execution
        "executor-2": [("t0", "e7"), ("t0", "e8")],  # two executions
    }
    invariants, figures = judge([await collect_evidence(store, [truth])], [truth], executions)
    (broken,) = [i for i in invariants if not i.ok]
    assert broken.name == "no task was executed twice by one executor"
    assert broken.violations == 1
    assert "by executor-2" in broken.examples[0]
    assert figures["executions"] == 3


async def test_a_trimmed_event_stream_is_not_taken_as_evidence() -> None:
    store, truth = await history()
    evidence = await collect_evidence(store, [truth])
    evidence.events = [e for e in evidence.events if not (e.kind == "task.saved" and e.subject == "t0")]
    invariants, _ = judge([evidence], [truth], {})
    (broken,) = [i for i in invariants if not i.ok]
    assert broken.name == "the store kept everything the verdict reads"


async def test_takeover_of_a_killed_replicas_tasks_is_measured_from_the_events() -> None:
    ns = f"verdict-{uuid.uuid4().hex[:8]}"
    clock = ManualClock()
    store = MemoryAggregatorStore(ns, clock=clock)
    await store.save_task(make_task("t0", chain_id=CHAIN))
    (held,) = await store.claim_tasks("replica-1.1", limit=1, lease_s=3)
    killed_at = clock().timestamp()
    clock.advance(4)
    assert await store.reap_expired_leases() == 1
    clock.advance(0.5)
    (again,) = await store.claim_tasks("replica-2.1", limit=1, lease_s=3)
    await store.complete_task(again.task.task_id, again.token)
    truth = ChainTruth(namespace=ns, chain_id=CHAIN, head=0, canonical={"t0"}, orphaned=set())
    kill = ReplicaKill(at=killed_at, owner="replica-1.1", namespace_chains={})
    _, figures = judge([await collect_evidence(store, [truth])], [truth], {}, replica_kills=[kill])
    (takeover,) = figures["takeovers"]
    assert takeover["tasks_held"] == 1
    assert takeover["tasks_taken_over"] == 1
    assert takeover["task_takeover_s"] == pytest.approx(4.5)
    assert figures["tasks_reclaimed"] == 1
    assert (await store.get_task("t0")).status is TaskStatus.COMPLETED
    assert held.token != again.token


def test_the_fault_schedule_is_a_function_of_the_seed_and_ends_before_the_chain_stops() -> None:
    opts = SimulationOptions(duration_s=20, kill_executor=True)
    first = plan_faults(opts, 5, redis_faults=True)
    assert first == plan_faults(opts, 5, redis_faults=True)
    assert first != plan_faults(opts, 6, redis_faults=True)
    assert [f.kind for f in first] == [
        "client-kill",
        "kill-replica",
        "kill-executor",
        "restart-redis",
        "client-kill",
    ]
    assert all(f.at_s > 0 and f.at_s + f.restart_after_s < opts.duration_s for f in first)
    assert [f.kind for f in plan_faults(opts, 5, redis_faults=False)] == ["kill-replica", "kill-executor"]


async def _judged(
    evidence: NamespaceEvidence, truth: ChainTruth, acks: list[CompletionAck] | None = None
) -> tuple[list[Invariant], dict[str, object]]:
    invariants, figures = judge([evidence], [truth], {}, acks=acks or [])
    return [i for i in invariants if not i.ok], figures


async def test_completions_acknowledged_to_workers_are_checked_against_the_store() -> None:
    store, truth = await history()
    evidence = await collect_evidence(store, [truth])
    ns = evidence.namespace
    token = {e.subject: e.token for e in evidence.events if e.kind == "task.completed"}
    assert all(isinstance(t, int) for t in token.values())
    fine = [CompletionAck(ns, task_id, int(t or 0), "replica-1.1") for task_id, t in token.items()]
    assert await _judged(evidence, truth, fine) == ([], (await _judged(evidence, truth))[1])

    twice = [*fine, CompletionAck(ns, "t0", int(token["t0"] or 0) + 1, "replica-2.1")]
    (broken,), _ = await _judged(evidence, truth, twice)
    assert broken.name == "no task was completed twice"
    assert broken.violations == 1
    assert "t0: the store acknowledged its completion under 2 tokens" in broken.examples[0]
    assert "replica-1.1, replica-2.1" in broken.examples[0]

    other_token = [CompletionAck(ns, "t1", int(token["t1"] or 0) + 5, "replica-2.1")]
    (broken,), _ = await _judged(evidence, truth, other_token)
    assert "t1: acknowledged to replica-2.1 under token" in broken.examples[0]

    lost = [CompletionAck(ns, "t0", 1, "replica-1.1")]
    evidence.events = [e for e in evidence.events if not (e.kind == "task.completed" and e.subject == "t0")]
    broken_list, _ = await _judged(evidence, truth, lost)
    assert {i.name for i in broken_list} == {
        "no task was completed twice",
        "the store kept everything the verdict reads",
    }
    (once,) = [i for i in broken_list if i.name == "no task was completed twice"]
    assert (
        "t0: acknowledged as completed to replica-1.1 (token 1), but no task.completed event"
        in once.examples[0]
    )


async def test_the_status_index_check_is_reported_and_not_applicable_on_the_fake() -> None:
    store, truth = await history()
    evidence = await collect_evidence(store, [truth])
    invariants, _ = judge([evidence], [truth], {})
    (indexes,) = [
        i for i in invariants if i.name == "every task is on exactly one status index, its status's"
    ]
    assert indexes.ok
    assert "not applicable" in indexes.detail
    evidence.index_check = (3, ["ponos:{x}:task:t1: also on ponos:{x}:tasks:processing"])
    broken, _ = await _judged(evidence, truth)
    assert [i.name for i in broken] == ["every task is on exactly one status index, its status's"]
    assert broken[0].checked == 3
    assert "also on" in broken[0].examples[0]


async def test_a_task_trimmed_by_retention_counts_as_final_only_in_a_soak_and_only_with_its_final_event() -> (
    None
):
    store, truth = await history()
    evidence = await collect_evidence(store, [truth])
    evidence.records["t0"] = None  # trimmed by retention, as a soak's shortened retention does
    broken, _ = await _judged(evidence, truth)
    assert [i.name for i in broken] == ["every task created reached a final state"]
    evidence.trimmed = True
    broken, figures = await _judged(evidence, truth)
    assert broken == []
    assert figures["tasks_trimmed"] == 1
    assert figures["tasks_completed"] == 3
    evidence.events = [e for e in evidence.events if not (e.kind == "task.completed" and e.subject == "t0")]
    broken, _ = await _judged(evidence, truth)
    assert (
        "t0: on the chain but no record"
        in next(i for i in broken if i.name == "every task created reached a final state").examples[0]
    )
    evidence.gaps = 2
    broken, _ = await _judged(evidence, truth)
    kept = next(i for i in broken if i.name == "the store kept everything the verdict reads")
    assert "2 read(s) of the event stream may have missed events" in kept.examples[0]


def test_client_kills_come_twice_a_run_and_a_soak_repeats_the_whole_schedule() -> None:
    opts = SimulationOptions(duration_s=20)
    plan = plan_faults(opts, 5, redis_faults=True)
    assert [f.kind for f in plan] == ["client-kill", "kill-replica", "restart-redis", "client-kill"]
    assert all(0 < f.at_s < opts.duration_s for f in plan)
    without = plan_faults(SimulationOptions(duration_s=20, client_kill=False), 5, redis_faults=True)
    assert without == [f for f in plan if f.kind != "client-kill"]  # the others' times do not move
    soak = plan_faults(
        SimulationOptions(duration_s=100, soak=True, fault_period_s=30, sample_every_s=1, retention_s=5),
        5,
        redis_faults=True,
    )
    assert [f.kind for f in soak] == ["client-kill", "kill-replica", "restart-redis", "client-kill"] * 3
    assert all(f.at_s + f.restart_after_s < 90 for f in soak)  # whole periods only
    assert all(f.restart_after_s == 4.5 for f in soak if f.kind == "kill-replica")


def _samples(values: list[int], *, step: float = 1.0) -> list[Sample]:
    return [
        Sample(t=i * step, used_memory=v * 1024 * 1024, keys=v * 100, rss_kib={"replica-1": 40_000 + v})
        for i, v in enumerate(values)
    ]


def test_the_flat_check_compares_the_later_half_with_the_earlier_one_after_the_warm_up() -> None:
    # Growing during the warm-up (the first 10 s), level after it: flat.
    level = [min(i, 10) * 5 for i in range(30)]
    flat, series = judge_flat(_samples(level), warm_up_s=10, end_s=30)
    assert flat.ok, flat.examples
    assert flat.checked == 3
    assert series["redis used_memory (bytes)"]["flat"] is True
    assert series["redis keys (DBSIZE)"]["earlier_max"] == 5000
    # Still growing after the warm-up: used_memory and keys are caught, the RSS (+1 KiB a
    # sample, within its 2 MiB allowance) is not.
    growing = [i * 5 for i in range(30)]
    flat, series = judge_flat(_samples(growing), warm_up_s=10, end_s=30)
    assert not flat.ok
    assert flat.violations == 2
    assert "redis used_memory (bytes): later max" in flat.examples[0]
    assert series["RSS replica-1 (KiB)"]["flat"] is True
    # A run that ends before its warm-up does is not judged flat.
    flat, _ = judge_flat(_samples(level), warm_up_s=40, end_s=30)
    assert not flat.ok
