"""What a person sees with the real ``redis-cli``: plain text everywhere but the
payload (keys.py and _codec.py promise it)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from _redis_support import (
    AVS_MIXED_CASE,
    Stores,
    cli_lines,
    make_performer,
    make_task,
    redis_cli,
    redis_cli_path,
)

from ponos_redis import EnvironmentVar, TaskStatus
from ponos_redis._validate import to_ms

pytestmark = [
    pytest.mark.redis_only,
    pytest.mark.timeout(30),
    pytest.mark.skipif(redis_cli_path() is None, reason="redis-cli is not on PATH"),
]

# Raw bytes, but no newline: redis-cli's raw output has one element per line.
PAYLOAD = b"\xde\xad\xbe\xef\x00-payload-\xff"
MS = re.compile(rb"\d{13}")


def _hash(output: bytes) -> dict[bytes, bytes]:
    lines = cli_lines(output)
    assert len(lines) % 2 == 0, lines
    return dict(zip(lines[::2], lines[1::2], strict=True))


def _readable(fields: dict[bytes, bytes], *, binary: set[bytes]) -> None:
    for name, value in fields.items():
        assert name.decode("ascii").isidentifier(), name
        if name in binary:
            continue
        text = value.decode("utf-8")
        assert text.isprintable(), f"{name!r} is not plain text: {value!r}"


async def test_claimed_task_hash_is_plain_text(redis_url: str, stores: Stores) -> None:
    store = await stores.aggregator()
    # An hour ahead: the server's clock and this machine's are the same clock here.
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    task = make_task(
        "t-readable",
        avs_address=AVS_MIXED_CASE,
        chain_id=17000,
        block_number=123456,
        deadline=deadline,
        payload=PAYLOAD,
    )
    await store.save_task(task)
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=30)

    fields = _hash(redis_cli(redis_url, "HGETALL", store.keys.task("t-readable")))
    _readable(fields, binary={b"payload"})
    assert fields[b"payload"] == PAYLOAD
    assert fields[b"task_id"] == b"t-readable"
    assert fields[b"status"] == b"processing"
    assert fields[b"owner"] == b"replica-a"
    assert fields[b"token"] == str(claimed.token).encode()
    assert fields[b"attempts"] == b"1"
    assert MS.fullmatch(fields[b"lease_until"])
    assert int(fields[b"lease_until"]) == to_ms(claimed.lease_until)
    assert MS.fullmatch(fields[b"created_at"])
    assert MS.fullmatch(fields[b"updated_at"])
    assert int(fields[b"deadline"]) == to_ms(deadline)
    assert fields[b"chain_id"] == b"17000"
    assert fields[b"block_number"] == b"123456"
    assert fields[b"operator_set_id"] == b"1"
    assert fields[b"threshold_bips"] == b"6667"
    assert fields[b"avs_address"] == AVS_MIXED_CASE.lower().encode()
    assert fields[b"callback_address"] == b"0xCallBack"
    assert fields[b"block_hash"] == b"0x" + b"00" * 32


async def test_pending_task_has_no_lease_fields(redis_url: str, stores: Stores) -> None:
    store = await stores.aggregator()
    await store.save_task(make_task("t-pending"))
    fields = _hash(redis_cli(redis_url, "HGETALL", store.keys.task("t-pending")))
    _readable(fields, binary={b"payload"})
    assert fields[b"status"] == b"pending"
    assert fields[b"attempts"] == b"0"
    assert fields[b"deadline"] == b""
    assert b"owner" not in fields
    assert b"lease_until" not in fields


async def test_indexes_and_events_are_readable(redis_url: str, stores: Stores) -> None:
    store = await stores.aggregator()
    await store.save_tasks([make_task("t-first"), make_task("t-second")])
    [claimed] = await store.claim_tasks("replica-a", limit=1, lease_s=30)
    assert claimed.task.task_id == "t-first"

    pending = cli_lines(
        redis_cli(redis_url, "ZRANGE", store.keys.tasks(TaskStatus.PENDING), "0", "-1", "WITHSCORES")
    )
    assert pending[0] == b"t-second"
    assert re.fullmatch(rb"\d+", pending[1]), pending
    assert len(pending) == 2

    processing = cli_lines(
        redis_cli(redis_url, "ZRANGE", store.keys.tasks(TaskStatus.PROCESSING), "0", "-1", "WITHSCORES")
    )
    assert processing == [b"t-first", str(to_ms(claimed.lease_until)).encode()]

    avs_pending = cli_lines(
        redis_cli(redis_url, "ZRANGE", store.keys.avs_pending(claimed.task.avs_address), "0", "-1")
    )
    assert avs_pending == [b"t-second"]

    lines = cli_lines(redis_cli(redis_url, "XRANGE", store.keys.events, "-", "+"))
    for line in lines:
        line.decode("utf-8")
    ids = [line for line in lines if re.fullmatch(rb"\d+-\d+", line)]
    assert len(ids) == 3, lines
    kinds = [lines[i + 1] for i, line in enumerate(lines) if line == b"kind"]
    assert kinds == [b"task.saved", b"task.saved", b"task.claimed"]
    for word in (
        b"subject",
        b"t-first",
        b"t-second",
        b"status",
        b"pending",
        b"processing",
        b"owner",
        b"replica-a",
    ):
        assert word in lines, word
    assert str(claimed.token).encode() in lines


async def test_executor_records_are_readable(redis_url: str, stores: Stores) -> None:
    store = await stores.executor()
    performer = make_performer(
        "perf-1",
        status="running",
        container_healthy=True,
        network_name="réseau",
        environment_vars=[
            EnvironmentVar(name="A", value="1"),
            EnvironmentVar(name="B", value_from_env="HOST_B"),
        ],
    )
    await store.save_performer_state(performer)
    fields = _hash(redis_cli(redis_url, "HGETALL", store.keys.performer("perf-1")))
    _readable(fields, binary=set())
    assert fields[b"container_healthy"] == b"true"
    assert fields[b"application_healthy"] == b"false"
    assert fields[b"last_health_check"] == b""
    assert MS.fullmatch(fields[b"created_at"])
    assert fields[b"network_name"].decode() == "réseau"
    assert json.loads(fields[b"environment_vars"]) == [
        {"name": "A", "value": "1", "value_from_env": ""},
        {"name": "B", "value": "", "value_from_env": "HOST_B"},
    ]
    assert cli_lines(redis_cli(redis_url, "ZRANGE", store.keys.performers, "0", "-1")) == [b"perf-1"]

    assert await store.mark_task_processed("t-1")
    # The marker is text too (its exact content is the script's business) and expires.
    marker = cli_lines(redis_cli(redis_url, "GET", store.keys.processed("t-1")))
    assert len(marker) == 1
    assert marker[0].decode("utf-8").isprintable()
    ttl = int(cli_lines(redis_cli(redis_url, "PTTL", store.keys.processed("t-1")))[0])
    assert ttl > 0
