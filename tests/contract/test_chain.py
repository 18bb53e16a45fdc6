"""Chains: the block cursor, block records, rewinds and the per-chain lease."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from _helpers import START, AggregatorFactory

from ponos_redis import (
    AggregatorStore,
    BlockRecord,
    ChainLease,
    InvalidInputError,
    InvalidTransitionError,
    ManualClock,
    NotFoundError,
    StaleLeaseError,
)

PREFIX_SHARING_CHAINS = [1, 17000, 11155111, 8453, 84532]


def block(chain_id: int, number: int, tag: str = "") -> BlockRecord:
    return BlockRecord(
        chain_id=chain_id,
        number=number,
        hash=f"0xhash-{chain_id}-{number}{tag}",
        parent_hash=f"0xhash-{chain_id}-{number - 1}",
        timestamp=1_700_000_000 + number * 12,
    )


async def acquire(store: AggregatorStore, chain_id: int, owner: str, ttl_s: float = 30) -> ChainLease:
    lease = await store.acquire_chain_lease(chain_id, owner, ttl_s=ttl_s)
    assert lease is not None
    return lease


# ---------------------------------------------------------------- cursor


async def test_cursor_never_set_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(NotFoundError):
        await aggregator.get_last_processed_block(1)


async def test_cursor_moves_forward(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 100)
    assert await aggregator.get_last_processed_block(1) == 100
    await aggregator.set_last_processed_block(1, 101)
    await aggregator.set_last_processed_block(1, 250)
    assert await aggregator.get_last_processed_block(1) == 250


async def test_cursor_can_start_at_zero_and_reach_the_top(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 0)
    assert await aggregator.get_last_processed_block(1) == 0
    await aggregator.set_last_processed_block(1, 2**53 - 1)
    assert await aggregator.get_last_processed_block(1) == 2**53 - 1


async def test_cursor_same_value_is_a_noop(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 100)
    await aggregator.set_last_processed_block(1, 100)
    assert await aggregator.get_last_processed_block(1) == 100


async def test_cursor_backwards_raises(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 100)
    with pytest.raises(InvalidTransitionError):
        await aggregator.set_last_processed_block(1, 99)
    with pytest.raises(InvalidTransitionError):
        await aggregator.set_last_processed_block(1, 0)
    assert await aggregator.get_last_processed_block(1) == 100


async def test_chains_sharing_digits_are_independent(aggregator: AggregatorStore) -> None:
    for i, chain_id in enumerate(PREFIX_SHARING_CHAINS):
        await aggregator.set_last_processed_block(chain_id, 1000 + i)
        await aggregator.save_block(block(chain_id, 7))
    for i, chain_id in enumerate(PREFIX_SHARING_CHAINS):
        assert await aggregator.get_last_processed_block(chain_id) == 1000 + i
        assert (await aggregator.get_block(chain_id, 7)) == block(chain_id, 7)
    # moving or rewinding one leaves the others alone
    await aggregator.set_last_processed_block(1, 5000)
    await aggregator.rewind_chain(8453, 5)
    await aggregator.delete_block(17000, 7)
    assert await aggregator.get_last_processed_block(1) == 5000
    assert await aggregator.get_last_processed_block(17000) == 1001
    assert await aggregator.get_last_processed_block(11155111) == 1002
    assert await aggregator.get_last_processed_block(8453) == 5
    assert await aggregator.get_last_processed_block(84532) == 1004
    for chain_id in (1, 11155111, 84532):
        assert (await aggregator.get_block(chain_id, 7)) == block(chain_id, 7)
    for chain_id in (17000, 8453):
        with pytest.raises(NotFoundError):
            await aggregator.get_block(chain_id, 7)


async def test_cursor_unset_on_other_chains(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(17000, 10)
    for chain_id in (1, 170, 1700, 170000, 11155111):
        with pytest.raises(NotFoundError):
            await aggregator.get_last_processed_block(chain_id)


async def test_chain_leases_sharing_digits_are_independent(aggregator: AggregatorStore) -> None:
    leases = {c: await acquire(aggregator, c, f"owner-{c}") for c in PREFIX_SHARING_CHAINS}
    for chain_id, lease in leases.items():
        assert lease.chain_id == chain_id
        assert lease.owner == f"owner-{chain_id}"
        await aggregator.set_last_processed_block(chain_id, 10, fence=lease.token)
    # a fence is only good for its own chain
    with pytest.raises(StaleLeaseError):
        await aggregator.set_last_processed_block(84532, 11, fence=leases[8453].token)
    await aggregator.release_chain_lease(leases[1])
    assert await aggregator.acquire_chain_lease(17000, "intruder", ttl_s=30) is None
    assert await aggregator.acquire_chain_lease(11155111, "intruder", ttl_s=30) is None
    assert (await acquire(aggregator, 1, "next")).owner == "next"


# ---------------------------------------------------------------- blocks


async def test_block_round_trip(aggregator: AggregatorStore) -> None:
    record = BlockRecord(
        chain_id=11155111,
        number=2**53 - 1,
        hash="0x" + "Ab" * 32,
        parent_hash="0x" + "cD" * 32,
        timestamp=1_767_225_600,
    )
    await aggregator.save_block(record)
    got = await aggregator.get_block(11155111, 2**53 - 1)
    assert got == record
    assert isinstance(got.timestamp, int)


async def test_save_block_replaces(aggregator: AggregatorStore) -> None:
    await aggregator.save_block(block(1, 10))
    await aggregator.save_block(block(1, 10, tag="-reorged"))
    assert (await aggregator.get_block(1, 10)).hash == "0xhash-1-10-reorged"


async def test_get_missing_block_raises(aggregator: AggregatorStore) -> None:
    await aggregator.save_block(block(1, 10))
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 11)
    with pytest.raises(NotFoundError):
        await aggregator.get_block(2, 10)


async def test_delete_block(aggregator: AggregatorStore) -> None:
    await aggregator.save_block(block(1, 10))
    await aggregator.save_block(block(1, 11))
    await aggregator.delete_block(1, 10)
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 10)
    assert await aggregator.get_block(1, 11) == block(1, 11)
    with pytest.raises(NotFoundError):
        await aggregator.delete_block(1, 10)


async def test_delete_missing_block_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(NotFoundError):
        await aggregator.delete_block(1, 10)


async def test_blocks_do_not_depend_on_the_cursor(aggregator: AggregatorStore) -> None:
    await aggregator.save_block(block(1, 500))
    with pytest.raises(NotFoundError):
        await aggregator.get_last_processed_block(1)
    await aggregator.set_last_processed_block(1, 10)
    assert await aggregator.get_block(1, 500) == block(1, 500)


# ---------------------------------------------------------------- rewind


async def test_rewind_moves_back_and_drops_later_blocks(aggregator: AggregatorStore) -> None:
    for n in range(5, 11):
        await aggregator.save_block(block(1, n))
    await aggregator.set_last_processed_block(1, 10)
    await aggregator.rewind_chain(1, 7)
    assert await aggregator.get_last_processed_block(1) == 7
    for n in range(5, 8):
        assert await aggregator.get_block(1, n) == block(1, n)
    for n in range(8, 11):
        with pytest.raises(NotFoundError):
            await aggregator.get_block(1, n)
    # the cursor moves forward again from there
    await aggregator.set_last_processed_block(1, 8)
    assert await aggregator.get_last_processed_block(1) == 8
    with pytest.raises(InvalidTransitionError):
        await aggregator.set_last_processed_block(1, 6)


async def test_rewind_to_the_cursor_drops_blocks_above_it(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 10)
    await aggregator.save_block(block(1, 10))
    await aggregator.save_block(block(1, 11))
    await aggregator.rewind_chain(1, 10)
    assert await aggregator.get_last_processed_block(1) == 10
    assert await aggregator.get_block(1, 10) == block(1, 10)
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 11)


async def test_rewind_to_zero(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 3)
    for n in range(4):
        await aggregator.save_block(block(1, n))
    await aggregator.rewind_chain(1, 0)
    assert await aggregator.get_last_processed_block(1) == 0
    assert await aggregator.get_block(1, 0) == block(1, 0)
    with pytest.raises(NotFoundError):
        await aggregator.get_block(1, 1)


async def test_rewind_above_cursor_raises(aggregator: AggregatorStore) -> None:
    await aggregator.set_last_processed_block(1, 10)
    await aggregator.save_block(block(1, 10))
    with pytest.raises(InvalidTransitionError):
        await aggregator.rewind_chain(1, 11)
    assert await aggregator.get_last_processed_block(1) == 10
    assert await aggregator.get_block(1, 10) == block(1, 10)


async def test_rewind_never_set_raises(aggregator: AggregatorStore) -> None:
    await aggregator.save_block(block(1, 10))
    with pytest.raises(NotFoundError):
        await aggregator.rewind_chain(1, 5)
    assert await aggregator.get_block(1, 10) == block(1, 10)


async def test_rewind_with_fence(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller")
    await aggregator.set_last_processed_block(1, 10, fence=lease.token)
    await aggregator.save_block(block(1, 10))
    with pytest.raises(StaleLeaseError):
        await aggregator.rewind_chain(1, 5, fence=lease.token + 1)
    assert await aggregator.get_last_processed_block(1) == 10
    assert await aggregator.get_block(1, 10) == block(1, 10)
    await aggregator.rewind_chain(1, 5, fence=lease.token)
    assert await aggregator.get_last_processed_block(1) == 5


async def test_rewind_with_a_stale_fence_above_cursor_is_stale(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller")
    await aggregator.set_last_processed_block(1, 10, fence=lease.token)
    with pytest.raises(StaleLeaseError):
        await aggregator.rewind_chain(1, 50, fence=lease.token + 1)


# ---------------------------------------------------------------- fencing the cursor


async def test_fenced_cursor_with_the_current_lease(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller")
    await aggregator.set_last_processed_block(1, 10, fence=lease.token)
    assert await aggregator.get_last_processed_block(1) == 10


async def test_fence_without_any_lease_is_stale(aggregator: AggregatorStore) -> None:
    with pytest.raises(StaleLeaseError):
        await aggregator.set_last_processed_block(1, 10, fence=1)
    with pytest.raises(NotFoundError):
        await aggregator.get_last_processed_block(1)


async def test_wrong_fence_is_stale(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller")
    await aggregator.set_last_processed_block(1, 10, fence=lease.token)
    for wrong in (lease.token + 1, lease.token + 100):
        with pytest.raises(StaleLeaseError):
            await aggregator.set_last_processed_block(1, 11, fence=wrong)
    assert await aggregator.get_last_processed_block(1) == 10


async def test_fence_of_an_expired_lease_is_stale(aggregator: AggregatorStore, clock: ManualClock) -> None:
    lease = await acquire(aggregator, 1, "poller", ttl_s=10)
    await aggregator.set_last_processed_block(1, 10, fence=lease.token)
    clock.advance(10)
    with pytest.raises(StaleLeaseError):
        await aggregator.set_last_processed_block(1, 11, fence=lease.token)
    assert await aggregator.get_last_processed_block(1) == 10


async def test_fence_of_a_replaced_lease_is_stale(aggregator: AggregatorStore, clock: ManualClock) -> None:
    old = await acquire(aggregator, 1, "old", ttl_s=10)
    clock.advance(11)
    new = await acquire(aggregator, 1, "new", ttl_s=10)
    with pytest.raises(StaleLeaseError):
        await aggregator.set_last_processed_block(1, 11, fence=old.token)
    await aggregator.set_last_processed_block(1, 11, fence=new.token)
    assert await aggregator.get_last_processed_block(1) == 11


async def test_fence_of_a_released_lease_is_stale(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller")
    await aggregator.release_chain_lease(lease)
    with pytest.raises(StaleLeaseError):
        await aggregator.set_last_processed_block(1, 11, fence=lease.token)


async def test_fence_is_checked_before_the_forward_only_rule(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller")
    await aggregator.set_last_processed_block(1, 10, fence=lease.token)
    with pytest.raises(StaleLeaseError):
        await aggregator.set_last_processed_block(1, 5, fence=lease.token + 1)
    with pytest.raises(InvalidTransitionError):
        await aggregator.set_last_processed_block(1, 5, fence=lease.token)
    assert await aggregator.get_last_processed_block(1) == 10


# ---------------------------------------------------------------- chain lease


async def test_acquire_chain_lease(aggregator: AggregatorStore, clock: ManualClock) -> None:
    clock.advance(1)
    lease = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    assert lease == ChainLease(
        chain_id=1, owner="poller-a", token=lease.token, expires_at=START + timedelta(seconds=16)
    )
    assert isinstance(lease.token, int)


async def test_acquire_held_by_another_returns_none(aggregator: AggregatorStore, clock: ManualClock) -> None:
    lease = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    clock.advance(14.999)
    assert await aggregator.acquire_chain_lease(1, "poller-b", ttl_s=15) is None
    # and the holder's lease was not disturbed
    renewed = await aggregator.renew_chain_lease(lease, ttl_s=15)
    assert renewed.token == lease.token


async def test_acquire_again_by_the_holder_renews(aggregator: AggregatorStore, clock: ManualClock) -> None:
    lease = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    clock.advance(5)
    again = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    assert again.token == lease.token
    assert again.owner == "poller-a"
    assert again.expires_at == START + timedelta(seconds=20)
    assert again.expires_at > lease.expires_at
    clock.advance(12)  # t=17: past the first expiry, inside the renewal
    assert await aggregator.acquire_chain_lease(1, "poller-b", ttl_s=15) is None
    await aggregator.set_last_processed_block(1, 3, fence=lease.token)


async def test_acquire_after_expiry_gets_a_higher_token(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    first = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    clock.advance(15)
    second = await acquire(aggregator, 1, "poller-b", ttl_s=15)
    assert second.owner == "poller-b"
    assert second.token > first.token
    assert second.expires_at == START + timedelta(seconds=30)


async def test_renew_chain_lease(aggregator: AggregatorStore, clock: ManualClock) -> None:
    lease = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    clock.advance(10)
    renewed = await aggregator.renew_chain_lease(lease, ttl_s=20)
    assert renewed == ChainLease(
        chain_id=1, owner="poller-a", token=lease.token, expires_at=START + timedelta(seconds=30)
    )
    clock.advance(10)  # t=20: the original would have expired
    assert await aggregator.acquire_chain_lease(1, "poller-b", ttl_s=15) is None
    await aggregator.set_last_processed_block(1, 1, fence=lease.token)
    # renewing with the older snapshot is fine too: same owner, same token
    again = await aggregator.renew_chain_lease(lease, ttl_s=5)
    assert again.expires_at == START + timedelta(seconds=25)


async def test_renew_after_expiry_is_stale(aggregator: AggregatorStore, clock: ManualClock) -> None:
    lease = await acquire(aggregator, 1, "poller-a", ttl_s=15)
    clock.advance(15)
    with pytest.raises(StaleLeaseError):
        await aggregator.renew_chain_lease(lease, ttl_s=15)
    # still free for anyone
    other = await acquire(aggregator, 1, "poller-b")
    assert other.token > lease.token


async def test_renew_after_release_is_stale(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller-a")
    await aggregator.release_chain_lease(lease)
    with pytest.raises(StaleLeaseError):
        await aggregator.renew_chain_lease(lease, ttl_s=15)
    assert (await acquire(aggregator, 1, "poller-b")).owner == "poller-b"


async def test_renew_after_takeover_is_stale_and_leaves_new_holder_alone(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    old = await acquire(aggregator, 1, "poller-a", ttl_s=10)
    clock.advance(10)
    new = await acquire(aggregator, 1, "poller-b", ttl_s=10)
    with pytest.raises(StaleLeaseError):
        await aggregator.renew_chain_lease(old, ttl_s=100)
    clock.advance(9)
    # the new holder's lease keeps its own expiry and token
    assert await aggregator.acquire_chain_lease(1, "poller-c", ttl_s=10) is None
    await aggregator.set_last_processed_block(1, 1, fence=new.token)
    clock.advance(1)  # t=20: the new lease expired on its own schedule
    third = await acquire(aggregator, 1, "poller-c", ttl_s=10)
    assert third.token > new.token


async def test_renew_same_owner_reacquired_after_expiry_uses_new_token(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    old = await acquire(aggregator, 1, "poller-a", ttl_s=10)
    clock.advance(10)
    taker = await acquire(aggregator, 1, "poller-b", ttl_s=10)
    clock.advance(10)
    mine = await acquire(aggregator, 1, "poller-a", ttl_s=10)
    assert mine.token > taker.token > old.token
    with pytest.raises(StaleLeaseError):
        await aggregator.renew_chain_lease(old, ttl_s=10)
    renewed = await aggregator.renew_chain_lease(mine, ttl_s=10)
    assert renewed.token == mine.token


async def test_release_frees_the_lease(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller-a")
    await aggregator.set_last_processed_block(1, 42, fence=lease.token)
    await aggregator.release_chain_lease(lease)
    other = await acquire(aggregator, 1, "poller-b")
    assert other.token > lease.token
    # the cursor survives the release
    assert await aggregator.get_last_processed_block(1) == 42


async def test_release_twice_is_a_noop(aggregator: AggregatorStore) -> None:
    lease = await acquire(aggregator, 1, "poller-a")
    await aggregator.release_chain_lease(lease)
    await aggregator.release_chain_lease(lease)
    assert (await acquire(aggregator, 1, "poller-b")).owner == "poller-b"


async def test_release_of_an_expired_lease_nobody_took_is_a_noop(
    aggregator: AggregatorStore, clock: ManualClock
) -> None:
    lease = await acquire(aggregator, 1, "poller-a", ttl_s=5)
    clock.advance(6)
    await aggregator.release_chain_lease(lease)
    assert (await acquire(aggregator, 1, "poller-b")).owner == "poller-b"


async def test_release_after_takeover_is_stale(aggregator: AggregatorStore, clock: ManualClock) -> None:
    old = await acquire(aggregator, 1, "poller-a", ttl_s=5)
    clock.advance(6)
    new = await acquire(aggregator, 1, "poller-b", ttl_s=30)
    with pytest.raises(StaleLeaseError):
        await aggregator.release_chain_lease(old)
    assert await aggregator.acquire_chain_lease(1, "poller-c", ttl_s=30) is None
    renewed = await aggregator.renew_chain_lease(new, ttl_s=30)
    assert renewed.token == new.token
    assert renewed.owner == "poller-b"
    await aggregator.set_last_processed_block(1, 1, fence=new.token)


async def test_lease_is_shared_by_replicas(make_aggregator: AggregatorFactory, clock: ManualClock) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    lease = await acquire(a, 1, "replica-a", ttl_s=10)
    assert await b.acquire_chain_lease(1, "replica-b", ttl_s=10) is None
    await b.set_last_processed_block(1, 7, fence=lease.token)
    assert await a.get_last_processed_block(1) == 7
    clock.advance(10)
    taken = await acquire(b, 1, "replica-b", ttl_s=10)
    with pytest.raises(StaleLeaseError):
        await a.renew_chain_lease(lease, ttl_s=10)
    assert taken.token > lease.token


@pytest.mark.parametrize("ttl_s", [0, -1, math.inf, math.nan])
async def test_bad_ttl_raises(aggregator: AggregatorStore, ttl_s: float) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.acquire_chain_lease(1, "poller", ttl_s=ttl_s)
    lease = await acquire(aggregator, 1, "poller", ttl_s=10)
    with pytest.raises(InvalidInputError):
        await aggregator.renew_chain_lease(lease, ttl_s=ttl_s)
    assert (await aggregator.renew_chain_lease(lease, ttl_s=10)).token == lease.token


@pytest.mark.parametrize("owner", ["", "a b", "a\nb", "x" * 257])
async def test_bad_lease_owner_raises(aggregator: AggregatorStore, owner: str) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.acquire_chain_lease(1, owner, ttl_s=10)
    assert (await acquire(aggregator, 1, "fine")).owner == "fine"
