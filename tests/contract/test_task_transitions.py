"""The task state machine, generated from ponos_redis.transitions.

Every (status, override) and (status, operation) pair: the allowed ones land
where the table says; the refused ones raise InvalidTransitionError and change
nothing.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from _helpers import START, AggregatorFactory, claim_one, make_task, task_in_status

from ponos_redis import (
    AggregatorStore,
    InvalidInputError,
    InvalidTransitionError,
    ManualClock,
    NotFoundError,
    StaleLeaseError,
    TaskStatus,
)
from ponos_redis.transitions import TASK_OPERATIONS, TASK_OVERRIDES, TaskOp

P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED

OVERRIDE_PAIRS = list(itertools.product(TaskStatus, TaskStatus))
ALLOWED_OVERRIDES = [(a, b) for a, b in OVERRIDE_PAIRS if b in TASK_OVERRIDES[a]]
REFUSED_OVERRIDES = [(a, b) for a, b in OVERRIDE_PAIRS if a != b and b not in TASK_OVERRIDES[a]]

# Operations that carry the task's token.
TOKEN_OPS = [TaskOp.COMPLETE, TaskOp.FAIL, TaskOp.RETRY, TaskOp.RELEASE, TaskOp.RENEW]
# Repeating the operation that finished a task, with its token, is a no-op.
REPLAYS = {(TaskOp.COMPLETE, C), (TaskOp.FAIL, F)}
TOKEN_OP_PAIRS = list(itertools.product(TOKEN_OPS, TaskStatus))
ALLOWED_TOKEN_OPS = [(op, s) for op, s in TOKEN_OP_PAIRS if TASK_OPERATIONS[op][0] == s]
REFUSED_TOKEN_OPS = [
    (op, s) for op, s in TOKEN_OP_PAIRS if TASK_OPERATIONS[op][0] != s and (op, s) not in REPLAYS
]


def _pair_id(pair: tuple[object, object]) -> str:
    return f"{pair[0]}-{pair[1]}"


def test_the_tables_are_what_this_suite_expects() -> None:
    # A guard: if the table changes, the generated cases below change with it,
    # and the specific expectations further down must be revisited.
    assert set(ALLOWED_OVERRIDES) == {(P, R), (P, F), (R, C), (R, F), (R, P), (F, P)}
    assert set(TASK_OPERATIONS) >= set(TOKEN_OPS)
    assert all(TASK_OPERATIONS[op][0] == R for op in TOKEN_OPS)


async def run_token_op(store: AggregatorStore, op: TaskOp, task_id: str, token: int) -> None:
    if op is TaskOp.COMPLETE:
        await store.complete_task(task_id, token)
    elif op is TaskOp.FAIL:
        await store.fail_task(task_id, token, "it broke")
    elif op is TaskOp.RETRY:
        await store.fail_task(task_id, token, "try again", retry=True)
    elif op is TaskOp.RELEASE:
        await store.release_task(task_id, token)
    elif op is TaskOp.RENEW:
        await store.renew_task_lease(task_id, token, lease_s=60)
    else:  # pragma: no cover
        raise AssertionError(op)


# ---------------------------------------------------------------- overrides


@pytest.mark.parametrize(("current", "target"), REFUSED_OVERRIDES, ids=_pair_id)
async def test_refused_override_raises_and_changes_nothing(
    aggregator: AggregatorStore, clock: ManualClock, current: TaskStatus, target: TaskStatus
) -> None:
    before = await task_in_status(aggregator, current, "t1")
    clock.advance(1)
    with pytest.raises(InvalidTransitionError):
        await aggregator.update_task_status("t1", target)
    with pytest.raises(InvalidTransitionError):
        await aggregator.update_task_status("t1", target.value)  # type: ignore[arg-type]
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize("status", list(TaskStatus))
async def test_override_to_same_status_is_a_noop(
    aggregator: AggregatorStore, clock: ManualClock, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    clock.advance(1)
    await aggregator.update_task_status("t1", status)
    await aggregator.update_task_status("t1", status.value)  # type: ignore[arg-type]
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize("as_string", [False, True], ids=["enum", "string"])
@pytest.mark.parametrize(("current", "target"), ALLOWED_OVERRIDES, ids=_pair_id)
async def test_allowed_override_lands_on_target(
    make_aggregator: AggregatorFactory,
    clock: ManualClock,
    current: TaskStatus,
    target: TaskStatus,
    as_string: bool,
) -> None:
    store = await make_aggregator(default_lease_s=45)
    before = await task_in_status(store, current, "t1")
    assert before.token is not None
    clock.advance(2)
    now = clock()
    await store.update_task_status("t1", target.value if as_string else target)  # type: ignore[arg-type]
    after = await store.get_task("t1")
    assert after.status == target
    assert after.task == before.task
    if (current, target) == (F, P):
        assert after.attempts == 0  # the operator's requeue: a full set of attempts again
        assert after.last_error == before.last_error  # why it failed stays readable
    else:
        assert after.attempts == before.attempts  # an override is never an attempt
    assert after.created_at == before.created_at
    assert after.updated_at == now
    assert after.token is not None
    assert after.token > before.token
    if target == R:
        assert after.owner == "manual"
        assert after.lease_until == now + timedelta(seconds=45)
    elif target == P:
        assert after.owner is None
        assert after.lease_until is None
    else:
        assert after.lease_until is None


async def test_override_to_processing_from_fresh_task(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(default_lease_s=12.5)
    await store.save_task(make_task("t1"))
    await store.update_task_status("t1", TaskStatus.PROCESSING)
    record = await store.get_task("t1")
    assert record.status == R
    assert record.owner == "manual"
    assert record.attempts == 0
    assert record.token is not None
    assert record.lease_until == START + timedelta(seconds=12.5)
    # the manual lease is a real lease: it expires and is reaped
    clock.advance(13)
    assert await store.reap_expired_leases() == 1
    assert (await store.get_task("t1")).status == P


@pytest.mark.parametrize("target", [C, F, P])
async def test_override_invalidates_the_holder(aggregator: AggregatorStore, target: TaskStatus) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    await aggregator.update_task_status("t1", target)
    after = await aggregator.get_task("t1")
    for op in TOKEN_OPS:
        with pytest.raises(StaleLeaseError):
            await run_token_op(aggregator, op, "t1", claimed.token)
    assert await aggregator.get_task("t1") == after


async def test_override_to_failed_then_holder_cannot_complete(aggregator: AggregatorStore) -> None:
    await aggregator.save_task(make_task("t1"))
    claimed = await claim_one(aggregator, "t1")
    await aggregator.update_task_status("t1", F)
    with pytest.raises(StaleLeaseError):
        await aggregator.complete_task("t1", claimed.token)
    assert (await aggregator.get_task("t1")).status == F


@pytest.mark.parametrize("bad", ["done", "PENDING", "", "cancelled", 3, None])
async def test_override_unknown_status_raises(aggregator: AggregatorStore, bad: object) -> None:
    await aggregator.save_task(make_task("t1"))
    before = await aggregator.get_task("t1")
    with pytest.raises(InvalidInputError):
        await aggregator.update_task_status("t1", bad)  # type: ignore[arg-type]
    assert await aggregator.get_task("t1") == before


async def test_override_missing_task_raises(aggregator: AggregatorStore) -> None:
    for status in TaskStatus:
        with pytest.raises(NotFoundError):
            await aggregator.update_task_status("nope", status)


# ---------------------------------------------------------------- token operations


@pytest.mark.parametrize(("op", "status"), REFUSED_TOKEN_OPS, ids=_pair_id)
async def test_refused_operation_raises_and_changes_nothing(
    aggregator: AggregatorStore, clock: ManualClock, op: TaskOp, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    assert before.token is not None
    clock.advance(1)
    with pytest.raises(InvalidTransitionError):
        await run_token_op(aggregator, op, "t1", before.token)
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize(("op", "status"), sorted(REPLAYS), ids=_pair_id)
async def test_replay_of_the_finishing_operation_is_a_noop(
    aggregator: AggregatorStore, clock: ManualClock, op: TaskOp, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    assert before.token is not None
    clock.advance(1)
    await run_token_op(aggregator, op, "t1", before.token)
    await run_token_op(aggregator, op, "t1", before.token)
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize(("op", "status"), ALLOWED_TOKEN_OPS, ids=_pair_id)
async def test_allowed_operation_lands_where_the_table_says(
    aggregator: AggregatorStore, clock: ManualClock, op: TaskOp, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    assert before.token is not None
    clock.advance(1)
    await run_token_op(aggregator, op, "t1", before.token)
    after = await aggregator.get_task("t1")
    assert after.status in TASK_OPERATIONS[op][1]
    assert after.updated_at == clock()


@pytest.mark.parametrize("op", TOKEN_OPS)
async def test_operation_on_missing_task_raises_not_found(aggregator: AggregatorStore, op: TaskOp) -> None:
    with pytest.raises(NotFoundError):
        await run_token_op(aggregator, op, "nope", 1)


@pytest.mark.parametrize("op", TOKEN_OPS)
@pytest.mark.parametrize("status", list(TaskStatus))
async def test_stale_token_is_checked_before_the_status(
    aggregator: AggregatorStore, op: TaskOp, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    assert before.token is not None
    for stale in (before.token + 1, before.token + 1000):
        with pytest.raises(StaleLeaseError):
            await run_token_op(aggregator, op, "t1", stale)
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize("op", TOKEN_OPS)
async def test_a_saved_task_without_token_refuses_any_token(aggregator: AggregatorStore, op: TaskOp) -> None:
    await aggregator.save_task(make_task("t1"))
    before = await aggregator.get_task("t1")
    with pytest.raises(StaleLeaseError):
        await run_token_op(aggregator, op, "t1", 1)
    assert await aggregator.get_task("t1") == before


# ---------------------------------------------------------------- claim and reap from every status


@pytest.mark.parametrize("status", [R, C, F])
async def test_claim_ignores_tasks_that_are_not_pending(
    aggregator: AggregatorStore, clock: ManualClock, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    clock.advance(1)
    assert await aggregator.claim_tasks("other", limit=10, lease_s=30) == []
    assert await aggregator.get_task("t1") == before


@pytest.mark.parametrize("status", [P, C, F])
async def test_reap_ignores_tasks_that_are_not_processing(
    aggregator: AggregatorStore, clock: ManualClock, status: TaskStatus
) -> None:
    before = await task_in_status(aggregator, status, "t1")
    clock.advance(3600)
    assert await aggregator.reap_expired_leases() == 0
    assert await aggregator.get_task("t1") == before


async def test_final_statuses_are_final(aggregator: AggregatorStore) -> None:
    done = await task_in_status(aggregator, C, "done")
    failed = await task_in_status(aggregator, F, "failed")
    for record, allowed in ((done, set()), (failed, {P})):  # failed: only the operator's requeue
        others = [s for s in TaskStatus if s != record.status and s not in allowed]
        for target in others:
            with pytest.raises(InvalidTransitionError):
                await aggregator.update_task_status(record.task.task_id, target)
        assert await aggregator.get_task(record.task.task_id) == record


# ---------------------------------------------------------------- the operator's requeue of a failed task


async def test_requeued_failed_task_runs_again_with_fresh_attempts(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    store = await make_aggregator(max_attempts=2)
    await store.save_tasks([make_task("first"), make_task("second")])
    holder = await claim_one(store, "first")
    await store.fail_task("first", holder.token, "upstream down", retry=True)
    clock.advance(1)
    [again] = await store.claim_tasks("r", limit=1, lease_s=30)
    assert (again.task.task_id, again.attempt) == ("first", 2)
    await store.fail_task("first", again.token, "upstream still down", retry=True)
    failed = await store.get_task("first")
    assert (failed.status, failed.attempts) == (F, 2)  # attempts used up: failed for good

    clock.advance(1)
    await store.update_task_status("first", P)
    requeued = await store.get_task("first")
    assert (requeued.status, requeued.attempts, requeued.owner) == (P, 0, None)
    assert requeued.token is not None
    assert failed.token is not None
    assert requeued.token > failed.token
    assert requeued.last_error == "upstream still down (no retry: 2 of 2 attempts used)"
    # Its place in the queue is the one it was saved with: ahead of "second".
    assert [t.task_id for t in await store.list_pending_tasks()] == ["first", "second"]
    with pytest.raises(StaleLeaseError):
        await store.complete_task("first", again.token)  # the old holder changes nothing
    [claimed] = await store.claim_tasks("r", limit=1, lease_s=30)
    assert (claimed.task.task_id, claimed.attempt) == ("first", 1)
    await store.complete_task("first", claimed.token)
    assert (await store.get_task("first")).status == C
