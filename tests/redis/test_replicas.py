"""Several replicas (stores with their own connections) share one namespace
and claim concurrently: every task is handed out exactly once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from _redis_support import TIMEOUT_S, Stores, all_events, make_tasks

from ponos_redis import ClaimedTask, StaleLeaseError, TaskStatus
from ponos_redis.backends.redis import RedisAggregatorStore

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]

N_TASKS = 200
N_REPLICAS = 4
MAX_ROUNDS = 200


async def _claim_everything(
    replicas: list[RedisAggregatorStore], rng: random.Random
) -> dict[str, list[ClaimedTask]]:
    """Rounds of concurrent claims with random limits, until nothing is pending."""
    got: dict[str, list[ClaimedTask]] = {f"replica-{i}": [] for i in range(len(replicas))}
    for _ in range(MAX_ROUNDS):
        owners = list(got)
        batches = await asyncio.wait_for(
            asyncio.gather(
                *(
                    store.claim_tasks(owner, limit=rng.randint(1, 12), lease_s=60)
                    for owner, store in zip(owners, replicas, strict=True)
                )
            ),
            TIMEOUT_S,
        )
        for owner, batch in zip(owners, batches, strict=True):
            got[owner].extend(batch)
        if not any(batches) and (await replicas[0].count_tasks())[TaskStatus.PENDING] == 0:
            return got
    pytest.fail(f"tasks still pending after {MAX_ROUNDS} rounds")


async def test_concurrent_claims_hand_out_each_task_once(stores: Stores) -> None:
    rng = random.Random(20260101)
    replicas = [await stores.aggregator() for _ in range(N_REPLICAS)]
    assert len({id(r._client) for r in replicas}) == N_REPLICAS, "each replica has its own client"
    tasks = make_tasks(N_TASKS)
    assert await replicas[0].save_tasks(tasks) == N_TASKS

    got = await _claim_everything(replicas, rng)
    claimed_ids = [c.task.task_id for batch in got.values() for c in batch]
    assert Counter(claimed_ids) == Counter(t.task_id for t in tasks), "every task claimed exactly once"
    tokens = [c.token for batch in got.values() for c in batch]
    assert len(set(tokens)) == N_TASKS, "every claim has its own fencing token"
    assert all(c.attempt == 1 for batch in got.values() for c in batch)
    assert sum(1 for batch in got.values() if batch) >= 2, "the work was shared"

    # Each replica completes its own tasks, concurrently with the others.
    async def complete_all(store: RedisAggregatorStore, batch: list[ClaimedTask]) -> None:
        for claimed in batch:
            await store.complete_task(claimed.task.task_id, claimed.token)

    await asyncio.wait_for(
        asyncio.gather(
            *(complete_all(store, got[owner]) for owner, store in zip(got, replicas, strict=True))
        ),
        TIMEOUT_S * 4,
    )

    # A replay with the same token is a no-op; another replica's token is stale.
    owners = [o for o in got if got[o]]
    mine, theirs = got[owners[0]][0], got[owners[1]][0]
    store = replicas[int(owners[0].split("-")[1])]
    await store.complete_task(mine.task.task_id, mine.token)
    with pytest.raises(StaleLeaseError):
        await store.complete_task(mine.task.task_id, theirs.token)
    with pytest.raises(StaleLeaseError):
        await replicas[0].complete_task(theirs.task.task_id, mine.token)

    counts = await replicas[-1].count_tasks()
    assert counts == {
        TaskStatus.PENDING: 0,
        TaskStatus.PROCESSING: 0,
        TaskStatus.COMPLETED: N_TASKS,
        TaskStatus.FAILED: 0,
    }
    for owner, batch in got.items():
        for claimed in batch:
            record = await replicas[0].get_task(claimed.task.task_id)
            assert record.status is TaskStatus.COMPLETED
            assert record.owner == owner
            assert record.token == claimed.token

    events = await all_events(replicas[1])
    kinds = Counter(e.kind for e in events)
    assert kinds["task.saved"] == N_TASKS
    assert kinds["task.claimed"] == N_TASKS
    assert kinds["task.completed"] == N_TASKS, "replays and refused completions add no event"
    by_task = {c.task.task_id: (owner, c.token) for owner, batch in got.items() for c in batch}
    for event in events:
        if event.kind == "task.claimed":
            assert (event.owner, event.token) == by_task[event.subject]
            assert event.status == "processing"


async def test_replicas_racing_for_the_same_task(stores: Stores) -> None:
    """Many rounds of one task and four claimers: exactly one wins each time."""
    replicas = [await stores.aggregator() for _ in range(N_REPLICAS)]
    for round_no in range(25):
        await replicas[0].save_tasks(make_tasks(1, prefix=f"race-{round_no}"))
        batches = await asyncio.wait_for(
            asyncio.gather(
                *(store.claim_tasks(f"replica-{i}", limit=1, lease_s=60) for i, store in enumerate(replicas))
            ),
            TIMEOUT_S,
        )
        winners = [i for i, batch in enumerate(batches) if batch]
        assert len(winners) == 1, batches
        [claimed] = batches[winners[0]]
        # The losers cannot complete it with any token they might guess from the winner's.
        loser = replicas[(winners[0] + 1) % N_REPLICAS]
        with pytest.raises(StaleLeaseError):
            await loser.complete_task(claimed.task.task_id, claimed.token - 1)
        await loser.complete_task(
            claimed.task.task_id, claimed.token
        )  # the token is the right, not the store
