"""Export and import: every record, both backends, across backends; idempotent,
refusing conflicts and malformed files before writing, counters restored, and
what an export taken under concurrent writes holds."""

from __future__ import annotations

import asyncio
import io

import pytest
import redis.asyncio as aioredis
from _ops_support import (
    AVS,
    PairFactory,
    fresh_namespace,
    make_task,
    populate,
    raw_snapshot,
    records,
    redis_config,
    rewrite,
)

from ponos_redis import (
    AlreadyExistsError,
    InvalidInputError,
    ManualClock,
    NamespaceLostError,
    TaskStatus,
)
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.ops import export_namespace, import_namespace, read_file
from ponos_redis.ops._format import TaskLine

pytestmark = pytest.mark.timeout(60)


async def export_bytes(store: object) -> bytes:
    buffer = io.BytesIO()
    await export_namespace(store, buffer)  # type: ignore[arg-type]
    return buffer.getvalue()


async def test_round_trip_keeps_every_record_field_by_field(make_pair: PairFactory) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    data = await export_bytes(agg)
    export = read_file(io.BytesIO(data))
    assert export.counts() == {
        "task": 13,
        "chain": 2,
        "block": 2,
        "operator_set_config": 1,
        "avs_config": 1,
        "performer": 1,
        "inflight": 1,
        "deployment": 1,
        "processed": 1,
    }
    dst_agg, dst_exe = await make_pair()
    report = await import_namespace(dst_agg, io.BytesIO(data))
    assert (report.written, report.identical) == (23, 0)
    again = await export_bytes(dst_agg)
    assert records(again) == records(data)
    assert read_file(io.BytesIO(again)).counters == export.counters
    # ... and through the public API: every task as it was, the queue in its order.
    for task_id in [k for kind, k in records(data) if kind == "task"]:
        assert await dst_agg.get_task(task_id) == await agg.get_task(task_id)
    assert await dst_agg.list_pending_tasks() == await agg.list_pending_tasks()
    assert await dst_agg.list_pending_tasks(AVS, limit=2) == await agg.list_pending_tasks(AVS, limit=2)
    assert await dst_agg.get_last_processed_block(1) == 111
    assert await dst_agg.get_block(1, 110) == await agg.get_block(1, 110)
    assert await dst_agg.get_operator_set_config(AVS, 1) == await agg.get_operator_set_config(AVS, 1)
    assert await dst_agg.get_avs_config(AVS) == await agg.get_avs_config(AVS)
    assert await dst_exe.list_performer_states() == await exe.list_performer_states()
    assert await dst_exe.list_inflight_tasks() == await exe.list_inflight_tasks()
    assert await dst_exe.get_deployment("dep-1") == await exe.get_deployment("dep-1")
    assert await dst_exe.list_deployment_history("dep-1") == await exe.list_deployment_history("dep-1")
    assert await dst_exe.is_task_processed("x-1") is True
    assert await dst_exe.mark_task_processed("x-1") is False


@pytest.mark.redis_only
async def test_redis_to_fake_to_redis_changes_nothing(redis_url: str) -> None:
    """In one process: a Redis namespace, exported into the fake, exported again into
    another Redis namespace: the same records, field by field, and the same counters."""
    a, b, fake = fresh_namespace("a"), fresh_namespace("b"), fresh_namespace("fake")
    src = await RedisAggregatorStore.open(redis_config(redis_url, a))
    src_exe = await RedisExecutorStore.open(redis_config(redis_url, a))
    try:
        await populate(src, src_exe)
        first = io.BytesIO()
        await export_namespace(redis_config(redis_url, a), first)
    finally:
        await src.close()
        await src_exe.close()
    await import_namespace("memory", io.BytesIO(first.getvalue()), namespace=fake)
    second = io.BytesIO()
    await export_namespace("memory", second, namespace=fake)
    await import_namespace(redis_config(redis_url, b), io.BytesIO(second.getvalue()))
    third = io.BytesIO()
    await export_namespace(redis_url, third, namespace=b)
    one, two, three = (read_file(io.BytesIO(x.getvalue())) for x in (first, second, third))
    assert records(one) == records(two) == records(three)
    assert one.counters == two.counters == three.counters
    assert (one.header.source, two.header.source, three.header.source) == ("redis", "memory", "redis")


async def test_import_is_idempotent(
    make_pair: PairFactory, backend: str, request: pytest.FixtureRequest
) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    data = await export_bytes(agg)
    dst, _ = await make_pair()
    await import_namespace(dst, io.BytesIO(data))
    before = await export_bytes(dst)
    raw = None
    if backend == "redis":
        raw = aioredis.Redis.from_url(request.getfixturevalue("redis_url"), socket_timeout=5)
    try:
        raw_before = None if raw is None else await raw_snapshot(raw, dst.namespace)
        report = await import_namespace(dst, io.BytesIO(data))
        assert (report.written, report.identical) == (0, 23)
        assert records(await export_bytes(dst)) == records(before)
        if raw is not None:
            assert await raw_snapshot(raw, dst.namespace) == raw_before, "a second import changed a key"
    finally:
        if raw is not None:
            await raw.aclose()


async def test_a_conflicting_record_refuses_the_import_and_writes_nothing(make_pair: PairFactory) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    data = await export_bytes(agg)
    dst, dst_exe = await make_pair()
    await dst.save_task(make_task("t-07", payload=b"another payload"))
    with pytest.raises(AlreadyExistsError) as info:
        await import_namespace(dst, io.BytesIO(data))
    message = str(info.value)
    assert "'t-07'" in message
    assert f"line {read_file(io.BytesIO(data)).line_of('task', 't-07')}" in message
    assert sum((await dst.count_tasks()).values()) == 1
    assert (await dst.get_task("t-07")).task.payload == b"another payload"
    assert await dst_exe.list_performer_states() == []
    with pytest.raises(AlreadyExistsError):
        await import_namespace(dst, io.BytesIO(data), dry_run=True)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: d.replace(b'"type":"performer"', b'"type":"performer","bogus"', 1), "not JSON"),
        (lambda d: d.replace(b'"attempts":0', b'"attempts":"zero"', 1), "not a valid record"),
        (lambda d: d[: d.rindex(b'{"type":"end"')], "ends without its end line"),
        (lambda d: d.replace(b"x-1", b"x-2", 1), "checksum mismatch"),
    ],
)
async def test_a_malformed_file_writes_nothing_and_names_the_line(
    make_pair: PairFactory, damage: object, expected: str
) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    data = damage(await export_bytes(agg))  # type: ignore[operator]
    dst, dst_exe = await make_pair()
    with pytest.raises(InvalidInputError) as info:
        await import_namespace(dst, io.BytesIO(data))
    assert expected in str(info.value)
    assert " line " in str(info.value)
    assert "nothing was written" in str(info.value)
    assert sum((await dst.count_tasks()).values()) == 0
    assert await dst_exe.list_performer_states() == []


async def test_dry_run_writes_nothing(make_pair: PairFactory) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe)
    data = await export_bytes(agg)
    dst, dst_exe = await make_pair()
    report = await import_namespace(dst, io.BytesIO(data), dry_run=True)
    assert (report.written, report.identical, report.dry_run) == (23, 0, True)
    assert sum((await dst.count_tasks()).values()) == 0
    assert await dst_exe.list_inflight_tasks() == []


async def test_counters_are_restored_so_tokens_only_grow_and_fifo_holds(make_pair: PairFactory) -> None:
    """A source whose clock ran ahead (tokens above the target's clock): after the
    import, the target's tokens are above every imported one anyway, and the queue
    keeps its order, new tasks behind the imported ones."""
    ahead = ManualClock()
    ahead.advance(10 * 365 * 86400)  # tokens ~ 2036 in microseconds
    agg, _ = await make_pair(clock=ahead)
    await agg.save_tasks([make_task(f"q-{i}") for i in range(6)])
    claimed = await agg.claim_tasks("a", limit=2, lease_s=30)
    await agg.release_task(claimed[0].task.task_id, claimed[0].token)
    data = await export_bytes(agg)
    export = read_file(io.BytesIO(data))
    top_token = max(line.record.token or 0 for line in export.by_type(TaskLine))
    assert export.counters.fence >= top_token
    dst, _ = await make_pair()  # the real clock: years behind the source's
    await import_namespace(dst, io.BytesIO(data))
    await dst.save_task(make_task("q-new"))
    order = [t.task_id for t in await agg.list_pending_tasks()]
    assert [t.task_id for t in await dst.list_pending_tasks()] == [*order, "q-new"]
    fresh = await dst.claim_tasks("b", limit=10, lease_s=30)
    assert [c.task.task_id for c in fresh] == [*order, "q-new"]
    assert min(c.token for c in fresh) > export.counters.fence
    lease = await dst.acquire_chain_lease(1, "p", ttl_s=5)
    assert lease is not None
    assert lease.token > export.counters.fence


async def test_processing_tasks_keep_lease_and_token_and_the_reaper_returns_them(
    make_pair: PairFactory,
) -> None:
    clock = ManualClock()
    agg, _ = await make_pair(clock=clock)
    await agg.save_tasks([make_task("held"), make_task("stale")])
    held, stale = await agg.claim_tasks("replica-1", limit=2, lease_s=30)
    data = await export_bytes(agg)
    dst, _ = await make_pair(clock=clock)
    await import_namespace(dst, io.BytesIO(data))
    record = await dst.get_task("held")
    assert (record.status, record.owner, record.token) == (TaskStatus.PROCESSING, "replica-1", held.token)
    assert record.lease_until == held.lease_until
    # The holder's token is the current one in the new namespace: it may complete ...
    await dst.complete_task("held", held.token)
    # ... and a lease nobody renews expires there and is reaped back to pending.
    clock.advance(31)
    assert await dst.reap_expired_leases() == 1
    after = await dst.get_task(stale.task.task_id)
    assert after.status is TaskStatus.PENDING
    assert after.token is not None
    assert after.token > stale.token


async def test_processed_markers_keep_their_expiry_and_expired_ones_are_not_imported(
    make_pair: PairFactory,
) -> None:
    clock = ManualClock()
    agg, exe = await make_pair(clock=clock)
    await exe.mark_task_processed("x-live")
    data = await export_bytes(agg)

    def add_expired(lines: list[dict[str, object]]) -> None:
        gone = dict(next(x for x in lines if x["type"] == "processed"))
        gone.update(task_id="x-gone", expires_at="2020-01-01T00:00:00.000Z")
        lines.insert(1, gone)

    changed = rewrite(data, add_expired)
    dst, dst_exe = await make_pair(clock=clock)
    await import_namespace(dst, io.BytesIO(changed))
    assert await dst_exe.is_task_processed("x-live") is True
    assert await dst_exe.is_task_processed("x-gone") is False
    assert records(await export_bytes(dst)) == records(data)
    clock.advance(7 * 86400 + 1)  # the default processed_ttl_s: the marker expires as it would have
    assert await dst_exe.is_task_processed("x-live") is False


@pytest.mark.redis_only
async def test_claim_records_runner_leases_and_events_are_not_exported(
    redis_url: str, raw: aioredis.Redis
) -> None:
    ns, dst = fresh_namespace(), fresh_namespace()
    store = await RedisAggregatorStore.open(redis_config(redis_url, ns))
    try:
        await store.save_tasks([make_task("t-1"), make_task("t-2")])
        await store.claim_tasks("a", limit=1, lease_s=30)
        assert await store.try_runner_lease("reaper", "a", ttl_s=30)
        assert [k async for k in raw.scan_iter(match=store.keys.prefix + "claim:*")]
        buffer = io.BytesIO()
        await export_namespace(store, buffer)
    finally:
        await store.close()
    assert b"claim" not in buffer.getvalue().replace(b'"task.claimed"', b"")
    await import_namespace(redis_config(redis_url, dst), io.BytesIO(buffer.getvalue()))
    kinds = {key.split(b":")[2] async for key in raw.scan_iter(match=f"ponos:{{{dst}}}:*".encode())}
    assert b"claim" not in kinds
    assert b"runner" not in kinds
    assert b"events" not in kinds
    assert b"task" in kinds
    assert b"chain" in kinds


@pytest.mark.redis_only
async def test_unreadable_records_are_skipped_and_named(redis_url: str, raw: aioredis.Redis) -> None:
    ns = fresh_namespace()
    store = await RedisAggregatorStore.open(redis_config(redis_url, ns))
    try:
        await store.save_tasks([make_task("good"), make_task("bad")])
        await raw.hset(store.keys.task("bad"), "chain_id", "oops")
        buffer = io.BytesIO()
        report = await export_namespace(store, buffer)
    finally:
        await store.close()
    assert len(report.skipped) == 1
    assert store.keys.task("bad") in report.skipped[0]
    export = read_file(io.BytesIO(buffer.getvalue()))
    assert export.skipped == 1
    assert [k for kind, k in records(export) if kind == "task"] == ["good"]


@pytest.mark.redis_only
async def test_exporting_a_missing_namespace_creates_nothing(redis_url: str, raw: aioredis.Redis) -> None:
    ns = fresh_namespace()
    with pytest.raises(NamespaceLostError):
        await export_namespace(redis_config(redis_url, ns), io.BytesIO())
    assert [k async for k in raw.scan_iter(match=f"ponos:{{{ns}}}:*".encode())] == []


@pytest.mark.redis_only
async def test_an_export_under_concurrent_writes_is_consistent_per_record(redis_url: str) -> None:
    """Writers save, claim, complete and retry while the export runs. Every task that
    existed throughout is in it, each record is consistent in itself, the counters are
    at least every exported token and sequence number, and the file imports."""
    ns = fresh_namespace()
    cfg = redis_config(redis_url, ns)
    stores = [await RedisAggregatorStore.open(cfg) for _ in range(3)]
    exporting = asyncio.Event()
    during = 0
    try:
        await stores[0].save_tasks([make_task(f"pre-{i:05d}", block_number=i) for i in range(3000)])
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            nonlocal during
            store, i = stores[n], 0
            while not stop.is_set():
                i += 1
                await store.save_task(make_task(f"new-{n}-{i}"))
                for c in await store.claim_tasks(f"w{n}", limit=5, lease_s=30):
                    if i % 2:
                        await store.complete_task(c.task.task_id, c.token)
                    else:
                        await store.fail_task(c.task.task_id, c.token, "again", retry=True)
                if exporting.is_set():
                    during += 1

        writers = [asyncio.create_task(writer(n)) for n in range(3)]
        await asyncio.sleep(0.2)
        exporting.set()
        buffer = io.BytesIO()
        await export_namespace(cfg, buffer)
        exporting.clear()
        stop.set()
        await asyncio.gather(*writers)
    finally:
        for store in stores:
            await store.close()
    assert during > 0, "no write happened while the export ran"
    export = read_file(io.BytesIO(buffer.getvalue()))  # every record valid, lease fields consistent
    tasks = list(export.by_type(TaskLine))
    ids = {line.record.task.task_id for line in tasks}
    assert {f"pre-{i:05d}" for i in range(3000)} <= ids
    assert max(line.record.token or 0 for line in tasks) <= export.counters.fence
    assert max(line.seq for line in tasks) <= export.counters.seq
    assert export.header.consistency == "per-record"
    dst = fresh_namespace()
    report = await import_namespace(redis_config(redis_url, dst), export)
    assert report.written == len(export.records)
    async with await RedisAggregatorStore.open(redis_config(redis_url, dst)) as target:
        claimed = await target.claim_tasks("after", limit=3, lease_s=30)
        assert all(c.token > export.counters.fence for c in claimed)


async def test_a_file_from_another_namespace_imports_under_any_name(make_pair: PairFactory) -> None:
    agg, exe = await make_pair()
    await populate(agg, exe, tasks=6)
    data = await export_bytes(agg)
    assert read_file(io.BytesIO(data)).header.namespace == agg.namespace
    dst, _ = await make_pair()
    await import_namespace(dst, io.BytesIO(data))
    assert (await dst.get_task("t-01")).last_error == "boom"


async def test_long_deployment_histories_are_imported_in_bounded_calls(make_pair: PairFactory) -> None:
    """Two deployments of 6,000 history entries each: more than one script may take
    (10,000 entries), so the import splits them; both come back whole."""
    agg, exe = await make_pair()
    await populate(agg, exe, tasks=6)
    data = await export_bytes(agg)

    def lengthen(lines: list[dict[str, object]]) -> None:
        deployment = next(x for x in lines if x["type"] == "deployment")
        event = deployment["history"][0]  # type: ignore[index]
        for name in ("dep-a", "dep-b"):
            copy = {**deployment, "record": {**deployment["record"], "deployment_id": name}}  # type: ignore[dict-item]
            copy["history"] = [{**event, "deployment_id": name} for _ in range(6000)]
            lines.append(copy)

    dst, dst_exe = await make_pair()
    await import_namespace(dst, io.BytesIO(rewrite(data, lengthen)))
    assert len(await dst_exe.list_deployment_history("dep-a")) == 6000
    assert len(await dst_exe.list_deployment_history("dep-b")) == 6000


@pytest.mark.redis_only
async def test_export_through_a_store_leaves_its_namespace_guard_alone(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """A store whose namespace vanished keeps refusing writes after an export through it."""
    ns = fresh_namespace()
    store = await RedisAggregatorStore.open(redis_config(redis_url, ns))
    try:
        await store.save_task(make_task("t-1"))
        epoch = store.epoch
        await raw.delete(store.keys.meta)
        with pytest.raises(NamespaceLostError):
            await export_namespace(store, io.BytesIO())
        assert store.epoch == epoch
        with pytest.raises(NamespaceLostError):
            await store.save_task(make_task("t-2"))
    finally:
        await store.close()
