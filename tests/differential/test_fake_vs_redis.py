"""The fake and Redis, step by step: the same random program, the same answers.

Hypothesis draws a program of store calls (saves, claims, completions with
current, stale or malformed tokens, retries, releases, overrides, deletes, reaps,
trims, clock moves, chain cursor and lease calls with well-formed or malformed
leases and fences, reorg failures of a chain's tasks above a block with ids kept and
well-formed, stale or malformed fences, single-runner leases, event reads from fixed or
out-of-range ids, de-dup marks). It runs on the in-process
fake and on Redis, in fresh namespaces, with one ManualClock each moved alike.
After every step the results (or exception types) must be equal, and so must
the whole observable state: every task record, the counts, the pending queue.
Finally the event feeds must agree (kinds, subjects, statuses, owners, tokens).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponos_redis import (
    BlockRecord,
    ManualClock,
    PonosStorageError,
    StorageConfig,
    Task,
    TaskStatus,
)
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.interfaces import AggregatorStore, ExecutorStore

pytestmark = pytest.mark.redis_only

IDS = [f"t{i}" for i in range(6)]
AVS = ["0x" + "ab" * 20, "0x" + "cd" * 20]
OWNERS = ["a", "b"]

task_ids = st.sampled_from(IDS)
chains = st.sampled_from([1, 17000])
blocks = st.integers(min_value=0, max_value=20)
# An index into the tokens seen so far, that token as a float, or a malformed one.
BAD_TOKENS = [1.0, True, False, "1", None, -1, 2**53, 2**64]
token_picks = st.one_of(
    st.integers(min_value=0, max_value=30),
    st.tuples(st.just("float"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("bad"), st.sampled_from(BAD_TOKENS)),
)
lease_faults = st.sampled_from(
    [("token", bad) for bad in BAD_TOKENS]
    + [("chain_id", "1"), ("chain_id", -1), ("owner", ""), ("owner", "a b"), ("owner", None)]
)
EVENT_IDS = ["0-0", "18446744073709551615-0", "18446744073709551616-0", "1-18446744073709551616"]

OPS = st.one_of(
    st.tuples(st.just("save"), task_ids, st.sampled_from([0, 1]), st.sampled_from([None, 5, 50])),
    st.tuples(st.just("save_batch"), st.lists(task_ids, min_size=1, max_size=4)),
    st.tuples(
        st.just("claim"),
        st.sampled_from(OWNERS),
        st.integers(min_value=0, max_value=3),
        st.sampled_from([1, 10, 30]),
    ),
    st.tuples(st.just("complete"), task_ids, token_picks),
    st.tuples(st.just("fail"), task_ids, token_picks, st.booleans()),
    st.tuples(st.just("release"), task_ids, token_picks),
    st.tuples(st.just("renew"), task_ids, token_picks, st.sampled_from([1, 20])),
    st.tuples(st.just("override"), task_ids, st.sampled_from(list(TaskStatus))),
    st.tuples(st.just("delete"), task_ids),
    st.tuples(st.just("reap")),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 5, 12, 40])),
    st.tuples(st.just("list"), st.sampled_from([None, *AVS]), st.sampled_from([None, 0, 2])),
    st.tuples(st.just("cursor"), chains, blocks, st.booleans()),
    st.tuples(st.just("rewind"), chains, blocks),
    st.tuples(st.just("block"), chains, blocks),
    st.tuples(st.just("acquire"), chains, st.sampled_from(OWNERS), st.sampled_from([3, 30])),
    st.tuples(st.just("renew_lease"), chains),
    st.tuples(st.just("release_lease"), chains),
    st.tuples(st.just("renew_lease_bad"), chains, lease_faults),
    st.tuples(st.just("release_lease_bad"), chains, lease_faults),
    st.tuples(st.just("cursor_bad_fence"), chains, blocks, token_picks),
    st.tuples(st.just("trim"), st.sampled_from([0, 1, 2, 1500])),
    st.tuples(st.just("events"), st.sampled_from(EVENT_IDS)),
    st.tuples(st.just("mark"), task_ids),
    st.tuples(
        st.just("orphan"),
        chains,
        st.integers(min_value=0, max_value=6),
        st.lists(task_ids, max_size=2),
        st.one_of(st.none(), st.just("lease"), token_picks),
    ),
    st.tuples(
        st.just("runner"),
        st.sampled_from(["reaper", "trimmer"]),
        st.sampled_from(OWNERS),
        st.sampled_from([3, 30]),
    ),
)


def make_task(task_id: str, avs: int, deadline_s: int | None, clock: ManualClock) -> Task:
    from datetime import timedelta

    return Task(
        task_id=task_id,
        avs_address=AVS[avs],
        operator_set_id=1,
        chain_id=1 if int(task_id[1:]) % 3 == 1 else 17000,
        block_number=int(task_id[1:]),
        block_hash="0x" + task_id,
        callback_address="cb",
        deadline=None if deadline_s is None else clock() + timedelta(seconds=deadline_s),
        payload=task_id.encode(),
    )


class Side:
    """One backend under test, with its own clock and the tokens and leases it has seen."""

    def __init__(self, agg: AggregatorStore, ex: ExecutorStore, clock: ManualClock) -> None:
        self.agg, self.ex, self.clock = agg, ex, clock
        self.tokens: list[int] = [0]
        self.leases: dict[int, Any] = {}

    def token(self, pick: Any) -> Any:
        if isinstance(pick, tuple):
            kind, value = pick
            return float(self.tokens[value % len(self.tokens)]) if kind == "float" else value
        return self.tokens[pick % len(self.tokens)]

    async def step(self, op: tuple[Any, ...]) -> Any:
        kind = op[0]
        a = self.agg
        if kind == "save":
            return await a.save_task(make_task(op[1], op[2], op[3], self.clock))
        if kind == "save_batch":
            return await a.save_tasks([make_task(i, 0, None, self.clock) for i in op[1]])
        if kind == "claim":
            claimed = await a.claim_tasks(op[1], limit=op[2], lease_s=op[3])
            self.tokens.extend(c.token for c in claimed)
            return [(c.task.task_id, c.token, c.attempt, c.lease_until) for c in claimed]
        if kind == "complete":
            return await a.complete_task(op[1], self.token(op[2]))
        if kind == "fail":
            return await a.fail_task(op[1], self.token(op[2]), "boom", retry=op[3])
        if kind == "release":
            return await a.release_task(op[1], self.token(op[2]))
        if kind == "renew":
            return await a.renew_task_lease(op[1], self.token(op[2]), lease_s=op[3])
        if kind == "override":
            return await a.update_task_status(op[1], op[2])
        if kind == "delete":
            return await a.delete_task(op[1])
        if kind == "reap":
            return await a.reap_expired_leases()
        if kind == "tick":
            self.clock.advance(op[1])
            return None
        if kind == "list":
            return [t.task_id for t in await a.list_pending_tasks(op[1], limit=op[2])]
        if kind == "cursor":
            lease = self.leases.get(op[1])
            fence = lease.token if (op[3] and lease is not None) else None
            return await a.set_last_processed_block(op[1], op[2], fence=fence)
        if kind == "rewind":
            return await a.rewind_chain(op[1], op[2])
        if kind == "block":
            record = BlockRecord(chain_id=op[1], number=op[2], hash="h", parent_hash="p", timestamp=1)
            await a.save_block(record)
            return [await _try(a.get_block(op[1], n)) for n in range(0, 21, 5)]
        if kind == "acquire":
            lease = await a.acquire_chain_lease(op[1], op[2], ttl_s=op[3])
            if lease is not None:
                self.leases[op[1]] = lease
                self.tokens.append(lease.token)
            return lease
        if kind == "renew_lease":
            if op[1] not in self.leases:
                return "no lease"
            self.leases[op[1]] = await a.renew_chain_lease(self.leases[op[1]], ttl_s=10)
            return self.leases[op[1]]
        if kind == "release_lease":
            if op[1] not in self.leases:
                return "no lease"
            return await a.release_chain_lease(self.leases[op[1]])
        if kind in ("renew_lease_bad", "release_lease_bad"):
            if op[1] not in self.leases:
                return "no lease"
            field, value = op[2]
            bad = msgspec.structs.replace(self.leases[op[1]], **{field: value})
            if kind == "renew_lease_bad":
                return await a.renew_chain_lease(bad, ttl_s=10)
            return await a.release_chain_lease(bad)
        if kind == "cursor_bad_fence":
            return await a.set_last_processed_block(op[1], op[2], fence=self.token(op[3]))
        if kind == "trim":
            return await a.trim_finished_tasks(limit=op[1])
        if kind == "events":
            return [(e.kind, e.subject, e.status, e.token) async for e in a.events(after=op[1])]
        if kind == "mark":
            return await self.ex.mark_task_processed(op[1])
        if kind == "orphan":
            _, chain_id, above, keep, pick = op
            if pick == "lease":
                lease = self.leases.get(chain_id)
                fence = None if lease is None else lease.token
            else:
                fence = None if pick is None else self.token(pick)
            return await a.fail_orphaned_tasks(chain_id, above, keep=keep, fence=fence)
        if kind == "runner":
            return await a.try_runner_lease(op[1], op[2], ttl_s=op[3])
        raise AssertionError(kind)

    async def state(self) -> Any:
        records = {}
        for task_id in IDS:
            records[task_id] = await _try(self.agg.get_task(task_id))
        cursors = {c: await _try(self.agg.get_last_processed_block(c)) for c in (1, 17000)}
        return (
            records,
            await self.agg.count_tasks(),
            [t.task_id for t in await self.agg.list_pending_tasks()],
            [t.task_id for t in await self.agg.list_pending_tasks(AVS[1])],
            cursors,
            [await self.ex.is_task_processed(i) for i in IDS],
        )


async def _try(coro: Any) -> Any:
    try:
        return await coro
    except PonosStorageError as exc:
        return type(exc).__name__


async def run_program(ops: list[tuple[Any, ...]], redis_url: str) -> None:
    ns = f"diff-{uuid.uuid4().hex[:12]}"
    fake_clock, redis_clock = ManualClock(), ManualClock()
    cfg = StorageConfig.from_dict(
        {
            "namespace": ns,
            "redis": {"url": redis_url, "durability": "none"},
            "tasks": {"max_attempts": 2, "retention_s": 30},
        }
    )
    fake = Side(
        MemoryAggregatorStore(ns, clock=fake_clock, max_attempts=2, retention_s=30),
        MemoryExecutorStore(ns, clock=fake_clock),
        fake_clock,
    )
    real = Side(
        await RedisAggregatorStore.open(cfg, clock=redis_clock),
        await RedisExecutorStore.open(cfg, clock=redis_clock),
        redis_clock,
    )
    try:
        for n, op in enumerate(ops):
            got_fake = await _try(fake.step(op))
            got_real = await _try(real.step(op))
            assert got_fake == got_real, f"step {n} {op}: fake {got_fake!r} != redis {got_real!r}"
            assert await fake.state() == await real.state(), f"state differs after step {n} {op}"
        fake_events = [(e.kind, e.subject, e.status, e.owner, e.token, e.at) async for e in fake.agg.events()]
        real_events = [(e.kind, e.subject, e.status, e.owner, e.token, e.at) async for e in real.agg.events()]
        assert fake_events == real_events
    finally:
        for store in (fake.agg, fake.ex, real.agg, real.ex):
            await store.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=40))
def test_fake_and_redis_agree_step_by_step(ops: list[tuple[Any, ...]], redis_url: str) -> None:
    asyncio.run(run_program(ops, redis_url))
