"""The durability policy (ponos_redis._durability.assess): pure, no server."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ponos_redis._durability import ServerFacts, assess

GOOD = ServerFacts(
    appendonly="yes",
    appendfsync="always",
    maxmemory_policy="noeviction",
    connected_replicas=2,
    min_replicas_to_write="1",
)
UNKNOWN = ServerFacts()
DURABILITIES = ["none", "aof", "replicated"]


def _facts(**changes: Any) -> ServerFacts:
    return dataclasses.replace(GOOD, **changes)


@pytest.mark.parametrize("durability", DURABILITIES)
def test_a_server_that_keeps_the_promise_has_no_problems(durability: str) -> None:
    assert assess(durability, 1, GOOD) == []


def test_durability_none_asks_only_for_noeviction() -> None:
    assert assess("none", 1, _facts(appendonly="no", appendfsync="no", connected_replicas=0)) == []


@pytest.mark.parametrize("durability", ["aof", "replicated"])
def test_appendonly_no_is_a_problem(durability: str) -> None:
    problems = assess(durability, 1, _facts(appendonly="no"))
    assert len(problems) == 1
    assert "appendonly" in problems[0]
    assert "appendonly yes" in problems[0], "the problem says what to set"


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize(
    "policy", ["allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl", "allkeys-random"]
)
def test_an_evicting_memory_policy_is_a_problem(durability: str, policy: str) -> None:
    problems = assess(durability, 1, _facts(maxmemory_policy=policy))
    assert len(problems) == 1
    assert policy in problems[0]
    assert "noeviction" in problems[0]


def test_everysec_with_aof_is_a_problem_naming_appendfsync() -> None:
    problems = assess("aof", 1, _facts(appendfsync="everysec"))
    assert len(problems) == 1
    assert "appendfsync" in problems[0]
    assert "always" in problems[0]


def test_everysec_with_replication_is_accepted() -> None:
    # Replicated durability relies on WAIT, not on each node's fsync.
    assert assess("replicated", 1, _facts(appendfsync="everysec")) == []


@pytest.mark.parametrize(("connected", "required"), [(0, 1), (1, 2), (0, 3)])
def test_too_few_connected_replicas_is_a_problem(connected: int, required: int) -> None:
    problems = assess("replicated", required, _facts(connected_replicas=connected))
    assert len(problems) == 1
    assert f"{connected} replica" in problems[0]
    assert str(required) in problems[0]


def test_enough_replicas_is_fine() -> None:
    assert assess("replicated", 2, _facts(connected_replicas=2)) == []
    assert assess("replicated", 1, _facts(connected_replicas=3)) == []


def test_replicas_do_not_matter_for_aof() -> None:
    assert assess("aof", 1, _facts(connected_replicas=0)) == []


def test_several_problems_are_all_reported() -> None:
    facts = _facts(appendonly="no", maxmemory_policy="allkeys-lru", connected_replicas=0)
    problems = assess("replicated", 1, facts)
    assert len(problems) == 3
    text = " ".join(problems)
    assert "noeviction" in text
    assert "appendonly" in text
    assert "replica" in text


@pytest.mark.parametrize("durability", ["aof", "replicated"])
def test_unknown_facts_are_problems_that_say_unknown(durability: str) -> None:
    problems = assess(durability, 1, UNKNOWN)
    assert problems, "a server that will not say cannot be trusted"
    assert all("unknown" in p for p in problems), problems
    text = " ".join(problems)
    assert "appendonly" in text
    assert "maxmemory-policy" in text
    if durability == "replicated":
        assert "replicas" in text


def test_unknown_facts_with_durability_none() -> None:
    # Nothing is promised, so nothing unknown can break the promise.
    assert assess("none", 1, UNKNOWN) == []


def test_unknown_replica_count_is_a_problem() -> None:
    problems = assess("replicated", 1, _facts(connected_replicas=None))
    assert len(problems) == 1
    assert "unknown" in problems[0]
