"""FakeChain's determinism and shape; the repetition helper."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from _runtime_support import run_virtual

from ponos_redis import ManualClock, StaleLeaseError, StoreUnavailableError
from ponos_redis.runtime import ChainSource, FakeChain, RetryPolicy, repeat_on_unavailable
from ponos_redis.testing import AVS


def chain(**kwargs: object) -> FakeChain:
    settings: dict[str, object] = {
        "seed": 3,
        "avs_address": AVS,
        "tasks_per_block": (1, 3),
        "reorg_every": (3, 9),
    }
    settings.update(kwargs)
    return FakeChain(5, **settings)  # type: ignore[arg-type]


def test_fake_chain_is_a_pure_function_of_its_arguments_and_step() -> None:
    a, b = chain(), chain()
    for step in (0, 1, 17, 80):
        assert [a.block_at(n, step) for n in range(step + 1)] == [
            b.block_at(n, step) for n in range(step + 1)
        ]
    assert a.reorgs(80) == b.reorgs(80)
    assert chain(seed=4).block_at(10, 10) != a.block_at(10, 10)
    view = a.at(40)
    assert view.step == 40
    assert a.step == 0  # the original did not move
    assert isinstance(a, ChainSource)


def test_fake_chain_blocks_link_up_and_reorgs_replace_a_suffix() -> None:
    c = chain(max_reorg_depth=3)
    reorgs = c.reorgs(120)
    assert len(reorgs) >= 10
    assert {r.depth for r in reorgs} <= {1, 2, 3}
    for step in range(121):
        blocks = [c.block_at(n, step) for n in range(step + 1)]
        assert blocks[0] is not None
        assert blocks[0].parent_hash == "0x" + "00" * 32
        for parent, child in itertools.pairwise(blocks):
            assert parent is not None
            assert child is not None
            assert child.parent_hash == parent.hash
        assert c.block_at(step + 1, step) is None
    for r in reorgs:
        before, after = r.step - 1, r.step
        for n in range(r.fork + 1):
            assert c.block_at(n, before) == c.block_at(n, after)
        for n in range(r.fork + 1, r.step):
            old, new = c.block_at(n, before), c.block_at(n, after)
            assert old is not None
            assert new is not None
            assert old.hash != new.hash
            carried = {t.task_id for t in old.tasks} & {t.task_id for t in new.tasks}
            if len(old.tasks) >= 2:
                assert 0 < len(carried) < len(old.tasks), "both fates in every replaced block"
            for task in new.tasks:
                assert (task.block_number, task.block_hash, task.chain_id) == (n, new.hash, 5)


def test_fake_chain_follows_a_clock_and_can_be_stepped() -> None:
    now = [1000.0]
    timed = chain(clock=lambda: now[0], genesis_time=990.0, block_time_s=2.0)
    assert timed.step == 5
    now[0] += 4.1
    assert asyncio.run(timed.head()) == 7
    with pytest.raises(RuntimeError):
        timed.set_step(3)
    stepped = chain()
    assert stepped.advance(3) == 3
    same = asyncio.run(stepped.block(3))
    other_genesis = timed.block_at(3, 3)
    assert same is not None
    assert other_genesis is not None
    assert same.hash == other_genesis.hash  # timestamps differ with genesis_time, identities do not
    assert same.timestamp != other_genesis.timestamp
    assert asyncio.run(stepped.block(4)) is None


def test_fake_chain_task_deadlines_follow_block_time() -> None:
    c = chain(deadline_s=60, genesis_time=1_767_225_600.0, block_time_s=12.0, tasks_per_block=(1, 1))
    block = c.block_at(10, 10)
    assert block is not None
    task = block.tasks[0]
    assert task.deadline is not None
    assert task.deadline.timestamp() == block.timestamp + 60 == 1_767_225_600 + 120 + 60


def test_repeat_on_unavailable_repeats_then_gives_up() -> None:
    async def main(clock: ManualClock) -> None:
        calls = 0

        async def flaky() -> int:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise StoreUnavailableError("down")
            return 42

        seen: list[StoreUnavailableError] = []
        policy = RetryPolicy(attempts=3, base_backoff_s=1, max_backoff_s=1.5)
        started = asyncio.get_running_loop().time()
        assert await repeat_on_unavailable(flaky, what="flaky", policy=policy, on_repeat=seen.append) == 42
        waited = asyncio.get_running_loop().time() - started
        assert len(seen) == 2
        assert 0.5 + 0.75 <= waited <= 1 + 1.5 + 0.01

        calls = -10
        with pytest.raises(StoreUnavailableError):
            await repeat_on_unavailable(flaky, what="flaky", policy=policy)
        assert calls == -7

        async def stale() -> None:
            raise StaleLeaseError("gone")

        with pytest.raises(StaleLeaseError):
            await repeat_on_unavailable(stale, what="stale", policy=policy)

    run_virtual(main)


def test_retry_policy_backoff_is_bounded() -> None:
    policy = RetryPolicy(attempts=10, base_backoff_s=0.05, max_backoff_s=2.0)
    for n in range(1, 30):
        assert 0 < policy.backoff(n) <= 2.0
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
