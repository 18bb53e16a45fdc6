"""The fake and Redis, step by step: the same random program, the same answers.

Hypothesis draws a program of store calls (saves, claims, completions with
current, stale or malformed tokens, retries, releases, overrides, deletes, reaps,
trims, clock moves, chain cursor and lease calls with well-formed or malformed
leases and fences, reorg failures of a chain's tasks above a block with ids kept and
well-formed, stale or malformed fences, single-runner leases, event reads from fixed or
out-of-range ids, de-dup marks; executor calls: performers, inflight tasks, deployments
and their status changes and history, processed-task markers that expire; the config
cache: operator set and AVS configs; blocking event reads: one started before a write,
which must deliver what the write appended, and one with nothing to wait for, which must
end empty after ``block_s``). It runs on the in-process fake and on Redis, in fresh
namespaces, with one ManualClock each moved alike. After every step the results (or
exception types) must be equal, and so must the whole observable state: every task
record, the counts, the pending queue, the chain cursors, every performer, inflight
task, deployment and its history, every config and de-dup marker. Finally the event
feeds must agree (kinds, subjects, statuses, owners, tokens, times).

The Hypothesis profile (tests/conftest.py) sets the number of programs
(``max_examples``) and their longest length (``stateful_step_count``):
``PONOS_HYPOTHESIS_PROFILE=nightly`` runs more and longer ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponos_redis import (
    AvsConfig,
    BlockRecord,
    Consensus,
    ConsensusType,
    CurveType,
    Deployment,
    DeploymentStatus,
    EnvironmentVar,
    InflightTask,
    ManualClock,
    OperatorSetTaskConfig,
    PerformerState,
    PonosStorageError,
    StorageConfig,
    Task,
    TaskStatus,
)
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.interfaces import AggregatorStore, ExecutorStore

# The profile (tests/conftest.py) sets how many programs run (max_examples) and how long
# they are (stateful_step_count: the longest; the shortest is a quarter of it). A step takes
# about 10 ms on both backends: the time limit allows 50 ms.
_PROGRAM_STEPS = settings.default.stateful_step_count
_TIMEOUT_S = max(120, settings.default.max_examples * _PROGRAM_STEPS // 20)

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(_TIMEOUT_S)]

IDS = [f"t{i}" for i in range(6)]
AVS = ["0x" + "ab" * 20, "0x" + "cd" * 20]
OWNERS = ["a", "b"]
PERFORMERS = ["p0", "p1"]
INFLIGHT = ["i0", "i1"]
DEPLOYMENTS = ["d0", "d1"]
OPERATOR_SETS = [0, 1]
# The chain whose cursor a blocking reader's writer moves last, to say "that was all".
MARKER_CHAIN = 999
CHAINS = [1, 17000, MARKER_CHAIN]
PROCESSED_TTL_S = 30
# How long a reader started before a write waits for each next event: it stops at the
# marker, so this bounds only a reader that was never woken (a failure).
LIVE_WAIT_S = 5.0

task_ids = st.sampled_from(IDS)
chains = st.sampled_from([1, 17000])
blocks = st.integers(min_value=0, max_value=20)
avs_picks = st.sampled_from([0, 1])
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

AGGREGATOR_OPS = st.one_of(
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
    st.tuples(st.just("rewind"), chains, blocks, st.booleans()),
    st.tuples(st.just("block"), chains, blocks),
    st.tuples(st.just("delete_block"), chains, blocks),
    st.tuples(st.just("acquire"), chains, st.sampled_from(OWNERS), st.sampled_from([3, 30])),
    st.tuples(st.just("renew_lease"), chains, st.sampled_from([0.5, 10])),
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

CONFIG_OPS = st.one_of(
    st.tuples(st.just("opset_save"), avs_picks, st.sampled_from(OPERATOR_SETS), st.integers(0, 2)),
    st.tuples(st.just("opset_get"), avs_picks, st.sampled_from(OPERATOR_SETS)),
    st.tuples(st.just("avs_save"), avs_picks, st.integers(0, 2)),
    st.tuples(st.just("avs_get"), avs_picks),
)

EXECUTOR_OPS = st.one_of(
    st.tuples(st.just("performer_save"), st.sampled_from(PERFORMERS), st.integers(0, 2)),
    st.tuples(st.just("performer_get"), st.sampled_from(PERFORMERS)),
    st.tuples(st.just("performer_delete"), st.sampled_from(PERFORMERS)),
    st.tuples(st.just("inflight_save"), st.sampled_from(INFLIGHT), st.integers(0, 2)),
    st.tuples(st.just("inflight_get"), st.sampled_from(INFLIGHT)),
    st.tuples(st.just("inflight_delete"), st.sampled_from(INFLIGHT)),
    st.tuples(
        st.just("deployment_save"),
        st.sampled_from(DEPLOYMENTS),
        st.sampled_from(list(DeploymentStatus)),
        st.booleans(),
    ),
    st.tuples(
        st.just("deployment_update"),
        st.sampled_from(DEPLOYMENTS),
        st.sampled_from(list(DeploymentStatus)),
        st.sampled_from(["", "image pull failed"]),
    ),
    # a deployment saved, then moved through a few statuses (allowed or not)
    st.tuples(
        st.just("deployment_walk"),
        st.sampled_from(DEPLOYMENTS),
        st.lists(st.sampled_from(list(DeploymentStatus)), min_size=1, max_size=3),
        st.sampled_from(["", "image pull failed"]),
    ),
    st.tuples(st.just("deployment_get"), st.sampled_from(DEPLOYMENTS)),
    st.tuples(st.just("deployment_history"), st.sampled_from(DEPLOYMENTS)),
    st.tuples(st.just("mark"), task_ids),
    st.tuples(st.just("is_processed"), task_ids),
)

# The calls a blocking reader watches: the aggregator's (the ones that append events, and
# reads that append none).
WATCHED_OPS = AGGREGATOR_OPS

EVENT_READS = st.one_of(
    # A reader waiting (block_s) from the newest event while a call runs: it must get
    # what the call appended, in order, then the marker.
    st.tuples(st.just("events_live"), WATCHED_OPS),
    # A reader from the n-th newest event (or the start), nothing being written: it gets
    # what is there, then waits block_s for more and ends.
    st.tuples(st.just("events_idle"), st.integers(0, 3), st.sampled_from([0.002, 0.01])),
)

OPS = st.one_of(AGGREGATOR_OPS, CONFIG_OPS, EXECUTOR_OPS, EVENT_READS)


def make_task(task_id: str, avs: int, deadline_s: int | None, clock: ManualClock) -> Task:
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


def make_opset_config(variant: int) -> OperatorSetTaskConfig:
    return [
        OperatorSetTaskConfig(task_sla_s=0, curve_type=CurveType.UNKNOWN),
        OperatorSetTaskConfig(
            task_sla_s=2.5,
            curve_type=CurveType.BN254,
            task_metadata=b"\x00meta\xff",
            consensus=Consensus(type=ConsensusType.STAKE_PROPORTION_THRESHOLD, threshold=6667),
        ),
        OperatorSetTaskConfig(task_sla_s=30, curve_type=CurveType.ECDSA, task_metadata=b"m" * 40),
    ][variant]


def make_avs_config(variant: int) -> AvsConfig:
    return [
        AvsConfig(aggregator_operator_set_id=0, executor_operator_set_ids=[], curve_type=CurveType.UNKNOWN),
        AvsConfig(aggregator_operator_set_id=1, executor_operator_set_ids=[2, 3], curve_type=CurveType.BN254),
        AvsConfig(aggregator_operator_set_id=2**53 - 1, executor_operator_set_ids=[0], curve_type="ecdsa"),  # type: ignore[arg-type]
    ][variant]


def make_performer(performer_id: str, variant: int, clock: ManualClock) -> PerformerState:
    env = [
        [],
        [EnvironmentVar(name="A", value="1")],
        [EnvironmentVar(name="B", value_from_env="SECRET"), EnvironmentVar(name="C", value="x y\nz")],
    ][variant]
    return PerformerState(
        performer_id=performer_id,
        avs_address=AVS[variant % 2].upper().replace("0X", "0x"),
        resource_id=f"res-{variant}",
        status=["running", "stopped", ""][variant],
        artifact_tag=f"v{variant}",
        created_at=clock(),
        last_health_check=None if variant == 0 else clock() - timedelta(seconds=variant),
        container_healthy=variant == 1,
        application_healthy=variant != 0,
        container_endpoint="10.0.0.1:8080" if variant else "",
        environment_vars=env,
    )


def make_inflight(task_id: str, variant: int, clock: ManualClock) -> InflightTask:
    return InflightTask(
        task_id=task_id,
        avs_address=AVS[variant % 2],
        operator_address="0x" + "12" * 20,
        received_at=clock(),
        status=["received", "running", ""][variant],
        aggregator_address=["agg:9000", "", "0xABC"][variant],
        operator_set_id=variant,
    )


def make_deployment(
    deployment_id: str, status: DeploymentStatus, completed: bool, clock: ManualClock
) -> Deployment:
    return Deployment(
        deployment_id=deployment_id,
        avs_address=AVS[0],
        artifact_registry="registry.example/avs",
        artifact_digest="sha256:" + deployment_id,
        status=status,
        started_at=clock() - timedelta(seconds=1),
        completed_at=clock() if completed else None,
        error="" if status != DeploymentStatus.FAILED else "crashed",
    )


def _event(e: Any) -> tuple[Any, ...]:
    return (e.kind, e.subject, e.status, e.owner, e.token, e.at)


class Side:
    """One backend under test, with its own clock and the tokens and leases it has seen."""

    def __init__(self, agg: AggregatorStore, ex: ExecutorStore, clock: ManualClock) -> None:
        self.agg, self.ex, self.clock = agg, ex, clock
        self.tokens: list[int] = [0]
        self.leases: dict[int, Any] = {}
        self.markers = itertools.count(1)

    def token(self, pick: Any) -> Any:
        if isinstance(pick, tuple):
            kind, value = pick
            return float(self.tokens[value % len(self.tokens)]) if kind == "float" else value
        return self.tokens[pick % len(self.tokens)]

    async def event_ids(self) -> list[str]:
        return [e.id async for e in self.agg.events()]

    async def step(self, op: tuple[Any, ...]) -> Any:
        kind = op[0]
        a, x = self.agg, self.ex
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
            lease = self.leases.get(op[1])
            fence = lease.token if (op[3] and lease is not None) else None
            return await a.rewind_chain(op[1], op[2], fence=fence)
        if kind == "block":
            record = BlockRecord(chain_id=op[1], number=op[2], hash="h", parent_hash="p", timestamp=1)
            await a.save_block(record)
            return [await _try(a.get_block(op[1], n)) for n in range(0, 21, 5)]
        if kind == "delete_block":
            result = await _try(a.delete_block(op[1], op[2]))
            return result, [await _try(a.get_block(op[1], n)) for n in range(0, 21, 5)]
        if kind == "acquire":
            lease = await a.acquire_chain_lease(op[1], op[2], ttl_s=op[3])
            if lease is not None:
                self.leases[op[1]] = lease
                self.tokens.append(lease.token)
            return lease
        if kind == "renew_lease":
            if op[1] not in self.leases:
                return "no lease"
            self.leases[op[1]] = await a.renew_chain_lease(self.leases[op[1]], ttl_s=op[2])
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
            return await x.mark_task_processed(op[1])
        if kind == "is_processed":
            return await x.is_task_processed(op[1])
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
        # config cache
        if kind == "opset_save":
            return await a.save_operator_set_config(AVS[op[1]], op[2], make_opset_config(op[3]))
        if kind == "opset_get":
            return await a.get_operator_set_config(AVS[op[1]].upper().replace("0X", "0x"), op[2])
        if kind == "avs_save":
            return await a.save_avs_config(AVS[op[1]], make_avs_config(op[2]))
        if kind == "avs_get":
            return await a.get_avs_config(AVS[op[1]])
        # executor
        if kind == "performer_save":
            return await x.save_performer_state(make_performer(op[1], op[2], self.clock))
        if kind == "performer_get":
            return await x.get_performer_state(op[1])
        if kind == "performer_delete":
            return await x.delete_performer_state(op[1])
        if kind == "inflight_save":
            return await x.save_inflight_task(make_inflight(op[1], op[2], self.clock))
        if kind == "inflight_get":
            return await x.get_inflight_task(op[1])
        if kind == "inflight_delete":
            return await x.delete_inflight_task(op[1])
        if kind == "deployment_save":
            return await x.save_deployment(make_deployment(op[1], op[2], op[3], self.clock))
        if kind == "deployment_update":
            return await x.update_deployment_status(op[1], op[2], error=op[3])
        if kind == "deployment_walk":
            await x.save_deployment(make_deployment(op[1], DeploymentStatus.PENDING, False, self.clock))
            moves = []
            for status in op[2]:
                self.clock.advance(1)
                moves.append(await _try(x.update_deployment_status(op[1], status, error=op[3])))
            return moves, await x.get_deployment(op[1]), await x.list_deployment_history(op[1])
        if kind == "deployment_get":
            return await x.get_deployment(op[1])
        if kind == "deployment_history":
            return await x.list_deployment_history(op[1])
        # blocking event reads
        if kind == "events_live":
            return await self.read_while(op[1])
        if kind == "events_idle":
            return await self.read_idle(op[1], op[2])
        raise AssertionError(kind)

    async def read_while(self, watched: tuple[Any, ...]) -> Any:
        """A reader blocked at the newest event while ``watched`` runs, then the marker
        is written: the reader must deliver what the call appended, then the marker."""
        ids = await self.event_ids()
        after = ids[-1] if ids else None
        seen: list[tuple[Any, ...]] = []
        marker_seen = asyncio.Event()

        async def read() -> None:
            feed = self.agg.events(after=after, block_s=LIVE_WAIT_S)
            async with contextlib.aclosing(feed):
                async for event in feed:
                    if event.kind == "chain.advanced" and event.subject == str(MARKER_CHAIN):
                        marker_seen.set()
                        return
                    seen.append(_event(event))

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.002)  # the reader is now (almost always) blocked waiting
        try:
            result = await _try(self.step(watched))
            await self.agg.set_last_processed_block(MARKER_CHAIN, next(self.markers))
        finally:
            async with asyncio.timeout(LIVE_WAIT_S * 2):
                await reader
        assert marker_seen.is_set(), f"a blocked reader missed the writes of {watched}"
        appended = [_event(e) async for e in self.agg.events(after=after)][:-1]
        assert seen == appended, "a blocked reader delivered other events than the call appended"
        return result, seen

    async def read_idle(self, back: int, block_s: float) -> Any:
        """A reader from the ``back``-th newest event (the start when there are fewer),
        with nothing being written: what is there, then nothing after ``block_s``."""
        ids = await self.event_ids()
        after = ids[-1 - back] if back < len(ids) else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(5):
            got = [_event(e) async for e in self.agg.events(after=after, block_s=block_s)]
        waited = loop.time() - started
        assert waited >= block_s - 0.002, f"events(block_s={block_s}) ended after {waited:.4f} s"
        return got

    async def state(self) -> Any:
        """Everything the interfaces show, read concurrently (the same reads on both sides)."""
        a, x = self.agg, self.ex
        reads: dict[Any, Any] = {
            "counts": a.count_tasks(),
            "pending": a.list_pending_tasks(),
            "pending_avs": a.list_pending_tasks(AVS[1]),
            "performers": x.list_performer_states(),
            "inflight": x.list_inflight_tasks(),
        }
        reads.update({("task", i): a.get_task(i) for i in IDS})
        reads.update({("processed", i): x.is_task_processed(i) for i in IDS})
        reads.update({("cursor", c): a.get_last_processed_block(c) for c in CHAINS})
        reads.update({("opset", v, n): a.get_operator_set_config(v, n) for v in AVS for n in OPERATOR_SETS})
        reads.update({("avs", v): a.get_avs_config(v) for v in AVS})
        reads.update({("deployment", d): x.get_deployment(d) for d in DEPLOYMENTS})
        reads.update({("history", d): x.list_deployment_history(d) for d in DEPLOYMENTS})
        values = await asyncio.gather(*(_try(read) for read in reads.values()))
        return dict(zip(reads, values, strict=True))


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
            "processed_ttl_s": PROCESSED_TTL_S,
        }
    )
    fake = Side(
        MemoryAggregatorStore(ns, clock=fake_clock, max_attempts=2, retention_s=30),
        MemoryExecutorStore(ns, clock=fake_clock, processed_ttl_s=PROCESSED_TTL_S),
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
        fake_events = [_event(e) async for e in fake.agg.events()]
        real_events = [_event(e) async for e in real.agg.events()]
        assert fake_events == real_events
    finally:
        for store in (fake.agg, fake.ex, real.agg, real.ex):
            await store.close()


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=_PROGRAM_STEPS // 4, max_size=_PROGRAM_STEPS))
def test_fake_and_redis_agree_step_by_step(ops: list[tuple[Any, ...]], redis_url: str) -> None:
    asyncio.run(run_program(ops, redis_url))
