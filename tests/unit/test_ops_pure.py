"""The pure parts of inspection and doctor: telling what a key is, the durability facts from
CONFIG and INFO, the Redis version check, and how the CLI reads and writes values."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from ponos_redis._durability import ServerFacts, assess, redis_version_problem, server_facts
from ponos_redis.cli._common import Duration, seconds, when
from ponos_redis.keys import KeyRef, Keys, parse_key
from ponos_redis.models import TaskStatus
from ponos_redis.ops.inspect import Payload, _raw_value

K = Keys("ns-1")
AVS = "0x" + "ab" * 20


@pytest.mark.parametrize(
    ("key", "ref"),
    [
        (K.meta, KeyRef("meta")),
        (K.set_aside, KeyRef("set-aside")),
        (K.fence, KeyRef("fence")),
        (K.seq, KeyRef("seq")),
        (K.events, KeyRef("events")),
        (K.task("t:1{x}"), KeyRef("task", "t:1{x}")),
        *[(K.tasks(s), KeyRef("tasks", s.value)) for s in TaskStatus],
        (K.claim("c1"), KeyRef("claim", "c1")),
        (K.avs_pending(AVS), KeyRef("avs-pending", AVS)),
        (K.avs_config(AVS), KeyRef("avs-config", AVS)),
        (K.chain(17000), KeyRef("chain", "17000")),
        (K.blocks(1), KeyRef("chain-blocks", "1")),
        (K.block_index(1), KeyRef("chain-block-index", "1")),
        (K.chain_tasks(11155111), KeyRef("chain-tasks", "11155111")),
        (K.runner("reaper"), KeyRef("runner", "reaper")),
        (K.operator_set_config(AVS, 3), KeyRef("opset", f"{AVS}:3")),
        (K.performer("p"), KeyRef("performer", "p")),
        (K.performers, KeyRef("performers")),
        (K.inflight("i"), KeyRef("inflight", "i")),
        (K.inflight_index, KeyRef("inflight-index")),
        (K.deployment("d"), KeyRef("deployment", "d")),
        (K.deployments, KeyRef("deployments")),
        (K.deployment_history("d"), KeyRef("history", "d")),
        (K.processed("t"), KeyRef("processed", "t")),
    ],
)
def test_every_key_of_the_layout_is_recognised(key: str, ref: KeyRef) -> None:
    assert parse_key(K, key) == ref
    assert parse_key(K, key.encode()) == ref


@pytest.mark.parametrize(
    "key",
    [
        "ponos:{other}:meta",
        "ponos:{ns-1}:junk",
        "ponos:{ns-1}:tasks:done",
        "ponos:{ns-1}:chain:x",
        "ponos:{ns-1}:chain:1:other",
        "ponos:{ns-1}:task:",
        "ponos:{ns-1}:avs:0x1:other",
        "unrelated",
    ],
)
def test_keys_outside_the_layout_are_not(key: str) -> None:
    assert parse_key(K, key) is None


def test_patterns_cover_what_they_name() -> None:
    assert K.pattern == "ponos:{ns-1}:*"
    assert K.chain(5).startswith(K.chain_pattern[:-1])
    assert K.runner("x").startswith(K.runner_pattern[:-1])


def test_server_facts_prefer_config_and_fall_back_on_info() -> None:
    config = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    facts = server_facts(config, {"redis_version": "7.2.4", "connected_slaves": 2})
    assert (facts.appendonly, facts.appendfsync, facts.maxmemory_policy) == ("yes", "always", "noeviction")
    assert (facts.connected_replicas, facts.redis_version) == (2, "7.2.4")
    denied = server_facts(
        dict.fromkeys(config),
        {"aof_enabled": 1, "maxmemory_policy": "allkeys-lru", "aof_last_write_status": "err"},
    )
    assert (denied.appendonly, denied.appendfsync, denied.maxmemory_policy) == (
        "yes",
        "unknown",
        "allkeys-lru",
    )
    assert denied.aof_last_write_status == "err"
    nothing = server_facts({}, None)
    assert nothing == ServerFacts()


def test_a_failed_aof_write_and_an_unknown_appendfsync_are_problems() -> None:
    facts = ServerFacts(
        appendonly="yes", appendfsync="always", maxmemory_policy="noeviction", aof_last_write_status="err"
    )
    assert any("aof_last_write_status:err" in p for p in assess("none", 1, facts))
    unknown = ServerFacts(appendonly="yes", maxmemory_policy="noeviction")
    assert any("appendfsync is unknown" in p for p in assess("aof", 1, unknown))
    assert assess("replicated", 0, ServerFacts(appendonly="yes", maxmemory_policy="noeviction")) == [
        "the number of connected replicas is unknown"
    ]


@pytest.mark.parametrize(("version", "too_old"), [("6.2.14", True), ("5.0.7", True), ("7.0.0", False)])
def test_redis_version(version: str, too_old: bool) -> None:
    assert (redis_version_problem(version) is not None) == too_old


@pytest.mark.parametrize("version", ["7.0.15", "7.2.4", "8.0.1", "10.0", "unknown", "", "7"])
def test_new_or_unknown_versions_pass(version: str) -> None:
    assert redis_version_problem(version) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1.5m", 90.0),
    ],
)
def test_durations(text: str, value: float) -> None:
    assert Duration().convert(text, None, None) == value


@pytest.mark.parametrize("text", ["", "ten", "10 minutes", "-5m", "5w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert(text, None, None)


def test_payloads_are_hex_with_their_length() -> None:
    assert Payload.of(b"\x00\xffab") == Payload(length=4, hex="00ff6162")
    assert _raw_value("payload", b"abc") == "0x616263"  # a bytes field: always hex
    assert _raw_value("chain_id", b"\xff\xfe") == "0xfffe"  # not UTF-8: hex
    assert _raw_value("chain_id", b"oops") == "oops"


def test_times_and_ages_for_people() -> None:
    assert when(datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == "2026-01-02 03:04:05.678Z"
    assert when(None) == "-"
    assert [seconds(s) for s in (4.25, 65, 3 * 3600 + 120, 3 * 86400, -30)] == [
        "4.2s",
        "1m05s",
        "3h02m",
        "3d00h",
        "-30.0s",
    ]
