"""Single-runner leases of periodic jobs: one reaper per interval across replicas."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from _helpers import AggregatorFactory, last_event_id, new_events

from ponos_redis import AggregatorStore, InvalidInputError, ManualClock


async def test_two_replicas_race_and_exactly_one_wins(make_aggregator: AggregatorFactory) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    for n in range(5):
        name = f"reaper-{n}"
        got = await asyncio.gather(
            a.try_runner_lease(name, "replica-a", ttl_s=10),
            b.try_runner_lease(name, "replica-b", ttl_s=10),
        )
        assert sorted(got) == [False, True], got


async def test_many_owners_racing_on_one_store_one_wins(aggregator: AggregatorStore) -> None:
    got = await asyncio.gather(*(aggregator.try_runner_lease("reaper", f"r{i}", ttl_s=10) for i in range(8)))
    assert sum(got) == 1


async def test_the_lease_is_free_again_once_its_ttl_has_passed(
    make_aggregator: AggregatorFactory, clock: ManualClock
) -> None:
    a = await make_aggregator()
    b = await make_aggregator()
    assert await a.try_runner_lease("reaper", "replica-a", ttl_s=10) is True
    assert await b.try_runner_lease("reaper", "replica-b", ttl_s=10) is False
    clock.advance(9.999)
    assert await b.try_runner_lease("reaper", "replica-b", ttl_s=10) is False
    clock.advance(0.001)  # exactly ttl_s after it was taken: expired
    assert await b.try_runner_lease("reaper", "replica-b", ttl_s=10) is True
    assert await a.try_runner_lease("reaper", "replica-a", ttl_s=10) is False


async def test_the_same_owner_renews_and_extends_it(aggregator: AggregatorStore, clock: ManualClock) -> None:
    assert await aggregator.try_runner_lease("reaper", "replica-a", ttl_s=10) is True
    clock.advance(8)
    assert await aggregator.try_runner_lease("reaper", "replica-a", ttl_s=10) is True  # now until 18 s
    clock.advance(8)  # 16 s: past the first expiry, not the extended one
    assert await aggregator.try_runner_lease("reaper", "replica-b", ttl_s=10) is False
    clock.advance(2)  # 18 s
    assert await aggregator.try_runner_lease("reaper", "replica-b", ttl_s=10) is True


async def test_a_shorter_renewal_shortens_it(aggregator: AggregatorStore, clock: ManualClock) -> None:
    assert await aggregator.try_runner_lease("reaper", "replica-a", ttl_s=60) is True
    assert await aggregator.try_runner_lease("reaper", "replica-a", ttl_s=1) is True
    clock.advance(1)
    assert await aggregator.try_runner_lease("reaper", "replica-b", ttl_s=1) is True


async def test_names_are_independent(aggregator: AggregatorStore) -> None:
    assert await aggregator.try_runner_lease("reaper", "replica-a", ttl_s=10) is True
    assert await aggregator.try_runner_lease("trimmer", "replica-b", ttl_s=10) is True
    assert await aggregator.try_runner_lease("reaper:x", "replica-b", ttl_s=10) is True
    assert await aggregator.try_runner_lease("reaper", "replica-b", ttl_s=10) is False
    assert await aggregator.try_runner_lease("trimmer", "replica-a", ttl_s=10) is False


async def test_owners_with_a_colon_are_told_apart(aggregator: AggregatorStore, clock: ManualClock) -> None:
    assert await aggregator.try_runner_lease("reaper", "host:1", ttl_s=10) is True
    assert await aggregator.try_runner_lease("reaper", "host:1", ttl_s=10) is True
    assert await aggregator.try_runner_lease("reaper", "host", ttl_s=10) is False
    assert await aggregator.try_runner_lease("reaper", "1", ttl_s=10) is False


async def test_it_leaves_tasks_chains_and_events_alone(aggregator: AggregatorStore) -> None:
    mark = await last_event_id(aggregator)
    assert await aggregator.try_runner_lease("reaper", "replica-a", ttl_s=10) is True
    assert await new_events(aggregator, mark) == []
    assert sum((await aggregator.count_tasks()).values()) == 0


BAD_CALLS = [
    pytest.param({"name": ""}, id="empty-name"),
    pytest.param({"name": "a b"}, id="space-name"),
    pytest.param({"name": None}, id="none-name"),
    pytest.param({"name": "x" * 257}, id="long-name"),
    pytest.param({"name": "x\ud800"}, id="surrogate-name"),
    pytest.param({"owner": ""}, id="empty-owner"),
    pytest.param({"owner": "a\nb"}, id="newline-owner"),
    pytest.param({"owner": 7}, id="int-owner"),
    pytest.param({"ttl_s": 0}, id="zero-ttl"),
    pytest.param({"ttl_s": -1}, id="negative-ttl"),
    pytest.param({"ttl_s": math.nan}, id="nan-ttl"),
    pytest.param({"ttl_s": math.inf}, id="inf-ttl"),
    pytest.param({"ttl_s": "10"}, id="str-ttl"),
    pytest.param({"ttl_s": True}, id="bool-ttl"),
]


@pytest.mark.parametrize("bad", BAD_CALLS)
async def test_bad_arguments_raise(aggregator: AggregatorStore, bad: dict[str, Any]) -> None:
    args: dict[str, Any] = {"name": "reaper", "owner": "replica-a", "ttl_s": 10, **bad}
    with pytest.raises(InvalidInputError):
        await aggregator.try_runner_lease(args["name"], args["owner"], ttl_s=args["ttl_s"])
    # nothing was taken
    assert await aggregator.try_runner_lease("reaper", "replica-z", ttl_s=10) is True
