"""One bench run: every operation beside its raw baseline, measured in the same run.

Each comparison interleaves ours and the baseline in rounds (ours, raw, ours,
raw ...) on the same server, so that load from other processes on the machine
hits both alike; the ratio of the two is the figure to read, not the absolute
times.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import os
import platform
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from .._configs import docker_file
from .._redis_server import RedisServer, redis_server_available
from ..backends.memory import MemoryAggregatorStore, reset_memory_namespaces
from ..backends.redis import RedisAggregatorStore
from ..config import StorageConfig
from ..models import ClaimedTask, Task
from ..runtime import TaskWorker
from ._raw import RAW_SCRIPTS, DictBaseline, RawRedis

__all__ = ["BenchOptions", "BenchReport", "Goal", "Row", "run_bench"]

PAYLOAD_BYTES = 1024
_AVS = "0x" + "ab" * 20
_CALLBACK = "0x" + "cd" * 20
_HASH = "0x" + "9f" * 32
_ROUNDS = 4


@dataclass
class BenchOptions:
    """What one run measures.

    Attributes:
        store: a Redis URL to measure instead of a private server (the server's
            persistence settings are reported as they are; restart is not measured).
        quick: small sizes (about 30 s): what the test suite runs.
        callers: N, the number of concurrent callers of the concurrent rows.
        redis: measure the Redis backend (needs redis-server on PATH or ``store``).
        memory: measure the in-process fake.
        listpack_value: also measure RAM per task with this ``hash-max-listpack-value``
            (private server only; 0 skips it).
        bullmq: try the BullMQ comparison (needs ``node`` and ``npm install bullmq``).
    """

    store: str | None = None
    quick: bool = False
    callers: int = 50
    redis: bool = True
    memory: bool = True
    listpack_value: int = 2048
    bullmq: bool = False


@dataclass
class Row:
    """One operation at one concurrency: ours beside its raw baseline."""

    backend: str
    operation: str
    callers: int
    unit: str
    p50_us: float | None
    p99_us: float | None
    rate: float
    raw_p50_us: float | None = None
    raw_p99_us: float | None = None
    raw_rate: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / raw: of p50 latency when both have one, else of throughput (raw / ours)."""
        if self.p50_us is not None and self.raw_p50_us:
            return self.p50_us / self.raw_p50_us
        if self.raw_rate and self.rate:
            return self.raw_rate / self.rate
        return None


@dataclass
class Goal:
    """A goal of the issue and what this run measured for it."""

    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured
    note: str = ""


@dataclass
class BenchReport:
    """Everything one run measured."""

    command: str
    machine: dict[str, str]
    server: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json``)."""
        data = asdict(self)
        for row, raw in zip(self.rows, data["rows"], strict=True):
            raw["ratio"] = row.ratio
        return data


# -- timing ---------------------------------------------------------------------------


async def _timed(
    fn: Callable[[int], Awaitable[Any]], indices: range, callers: int
) -> tuple[list[float], float]:
    """Run ``fn(i)`` for each index with ``callers`` concurrent callers: latencies (s) and wall time."""
    latencies: list[float] = []
    it = iter(indices)

    async def caller() -> None:
        for i in it:
            t0 = time.perf_counter()
            await fn(i)
            latencies.append(time.perf_counter() - t0)

    gc.collect()
    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies, time.perf_counter() - t0


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


async def _pair(
    backend: str,
    operation: str,
    ours: Callable[[int], Awaitable[Any]],
    raw: Callable[[int], Awaitable[Any]] | None,
    n: int,
    callers: int,
    *,
    per_call: int = 1,
    unit: str = "calls",
    note: str = "",
) -> Row:
    """Ours and the baseline interleaved in rounds over the same ``n`` indices."""
    lat_o: list[float] = []
    lat_r: list[float] = []
    wall_o = wall_r = 0.0
    for r in range(_ROUNDS):
        chunk = range(r * n // _ROUNDS, (r + 1) * n // _ROUNDS)
        lat, wall = await _timed(ours, chunk, callers)
        lat_o += lat
        wall_o += wall
        if raw is not None:
            lat, wall = await _timed(raw, chunk, callers)
            lat_r += lat
            wall_r += wall
    return Row(
        backend=backend,
        operation=operation,
        callers=callers,
        unit=unit,
        p50_us=_pct(lat_o, 0.5),
        p99_us=_pct(lat_o, 0.99),
        rate=n * per_call / wall_o,
        raw_p50_us=_pct(lat_r, 0.5) if raw else None,
        raw_p99_us=_pct(lat_r, 0.99) if raw else None,
        raw_rate=n * per_call / wall_r if raw else None,
        note=note,
    )


def _tasks(prefix: str, n: int, payload: bytes) -> list[Task]:
    return [
        Task(
            task_id=f"{prefix}-{i}",
            avs_address=_AVS,
            operator_set_id=1,
            chain_id=17000,
            block_number=i,
            block_hash=_HASH,
            callback_address=_CALLBACK,
            payload=payload,
        )
        for i in range(n)
    ]


# -- the Redis backend -------------------------------------------------------------------


class _RedisBench:
    def __init__(self, opts: BenchOptions, url: str, report: BenchReport, server: RedisServer | None) -> None:
        self.opts = opts
        self.url = url
        self.report = report
        self.server = server
        self.run_id = uuid.uuid4().hex[:8]
        self.payload = os.urandom(PAYLOAD_BYTES)
        self.admin: Any = aioredis.Redis.from_url(url, decode_responses=True)
        q = opts.quick
        self.n1 = 200 if q else 2000
        self.nn = 400 if q else 4000

    def ns(self, what: str) -> str:
        return f"bench-{self.run_id}-{what}"

    @contextlib.asynccontextmanager
    async def pair(self, what: str) -> AsyncIterator[tuple[RedisAggregatorStore, RawRedis]]:
        cfg = StorageConfig.from_dict(
            {"type": "redis", "namespace": self.ns(what), "redis": {"url": self.url}}
        )
        store = await RedisAggregatorStore.open(cfg)
        raw = RawRedis(self.url, f"ponos:{{{self.ns(what)}-raw}}:")
        try:
            yield store, raw
        finally:
            await store.close()
            await raw.aclose()

    def add(self, row: Row) -> None:
        self.report.rows.append(row)

    async def run(self) -> None:
        await self.server_facts()
        for callers in (1, self.opts.callers):
            await self.single_ops(callers)
        await self.save_many()
        await self.listing()
        await self.claim_many()
        await self.lifecycle()
        if self.opts.bullmq:
            await self.bullmq()
        await self.reap()
        await self.memory()
        await self.restart()

    async def server_facts(self) -> None:
        info = await self.admin.info("server")
        facts = {"redis_version": str(info.get("redis_version"))}
        for name in ("appendonly", "appendfsync", "save", "maxmemory-policy", "hash-max-listpack-value"):
            reply = await self.admin.config_get(name)
            facts[name] = str(reply.get(name, "?"))
        facts["server"] = "a private redis-server from docker/redis.conf" if self.server else "--store"
        self.report.server = facts

    async def single_ops(self, c: int) -> None:
        n = self.n1 if c == 1 else self.nn
        tag = f"single{c}"
        async with self.pair(tag) as (store, raw):
            ours_tasks = _tasks(f"o{c}", n, self.payload)
            raw_tasks = _tasks(f"r{c}", n, self.payload)

            async def save_o(i: int) -> None:
                await store.save_task(ours_tasks[i])

            async def save_r(i: int) -> None:
                await raw.save([raw_tasks[i]])

            self.add(await _pair("redis", "save_task", save_o, save_r, n, c))

            async def get_o(i: int) -> None:
                await store.get_task(ours_tasks[i].task_id)

            async def get_r(i: int) -> None:
                await raw.get(raw_tasks[i].task_id)

            self.add(await _pair("redis", "get_task", get_o, get_r, n, c))

            async def count_o(i: int) -> None:
                await store.count_tasks()

            self.add(await _pair("redis", "count_tasks", count_o, lambda i: raw.count(), n, c))

            held_o: list[ClaimedTask | None] = [None] * n
            held_r: list[tuple[str, str] | None] = [None] * n

            async def claim_o(i: int) -> None:
                got = await store.claim_tasks("bench", limit=1, lease_s=300)
                held_o[i] = got[0] if got else None

            async def claim_r(i: int) -> None:
                got = await raw.claim(1)
                held_r[i] = got[0] if got else None

            self.add(await _pair("redis", "claim_tasks(1)", claim_o, claim_r, n, c))

            async def complete_o(i: int) -> None:
                h = held_o[i]
                if h is not None:
                    await store.complete_task(h.task.task_id, h.token)

            async def complete_r(i: int) -> None:
                h = held_r[i]
                if h is not None:
                    await raw.complete(*h)

            self.add(await _pair("redis", "complete_task", complete_o, complete_r, n, c))

    async def save_many(self) -> None:
        batches = 10 if self.opts.quick else 100
        for c in (1, self.opts.callers):
            async with self.pair(f"many{c}") as (store, raw):
                ours = _tasks(f"o{c}", batches * 100, self.payload)
                raws = _tasks(f"r{c}", batches * 100, self.payload)

                async def save_o(i: int, ours: list[Task] = ours) -> None:
                    await store.save_tasks(ours[i * 100 : (i + 1) * 100])

                async def save_r(i: int, raws: list[Task] = raws) -> None:
                    await raw.save(raws[i * 100 : (i + 1) * 100])

                row = await _pair(
                    "redis", "save_tasks(100)", save_o, save_r, batches, c, per_call=100, unit="tasks"
                )
                self.add(row)
        ceiling = await self.redis_benchmark()
        if ceiling is not None:
            self.add(
                Row(
                    backend="redis",
                    operation="save ceiling (redis-benchmark)",
                    callers=50,
                    unit="tasks",
                    p50_us=None,
                    p99_us=None,
                    rate=ceiling,
                    note="redis-benchmark -c 50 -P 16, the minimal save script, 1 task per call",
                )
            )

    async def redis_benchmark(self) -> float | None:
        binary = shutil.which("redis-benchmark")
        if binary is None:
            self.report.notes.append("redis-benchmark is not on PATH: no save ceiling measured")
            return None
        sha = await self.admin.script_load(RAW_SCRIPTS["save"])
        prefix = f"ponos:{{{self.ns('ceiling')}}}:"
        host, port = self._host_port()
        fields = [
            "task_id", "__rand_int__", "avs_address", _AVS, "operator_set_id", "1", "chain_id", "17000",
            "block_number", "__rand_int__", "block_hash", _HASH, "callback_address", _CALLBACK,
            "deadline", "", "threshold_bips", "0", "payload", "x" * PAYLOAD_BYTES,
        ]  # fmt: skip
        n = 5000 if self.opts.quick else 50000
        cmd = [
            binary, "-h", host, "-p", str(port), "-c", "50", "-P", "16", "-n", str(n), "-r", "1000000000",
            "--csv", "EVALSHA", sha, "3", prefix + "seq", prefix + "pending", prefix + "task:__rand_int__",
            "20", *fields,
        ]  # fmt: skip
        done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=300)
        rows = [r for r in csv.reader(io.StringIO(done.stdout)) if len(r) > 1]
        try:
            return float(rows[-1][1])
        except (IndexError, ValueError):
            self.report.notes.append(f"redis-benchmark gave no figure: {done.stderr.strip()[:200]}")
            return None

    def _host_port(self) -> tuple[str, int]:
        kwargs = self.admin.connection_pool.connection_kwargs
        return str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379))

    async def listing(self) -> None:
        sizes = [1000] if self.opts.quick else [1000, 100_000]
        for size in sizes:
            async with self.pair(f"list{size}") as (store, raw):
                ours = _tasks("o", size, self.payload)
                raws = _tasks("r", size, self.payload)
                for i in range(0, size, 500):
                    await store.save_tasks(ours[i : i + 500])
                    await raw.save(raws[i : i + 500])
                n = (20 if self.opts.quick else 100) if size == 1000 else 8

                async def list_o(i: int) -> None:
                    await store.list_pending_tasks(limit=1000)

                async def list_r(i: int) -> None:
                    await raw.list_pending(1000)

                self.add(
                    await _pair(
                        "redis",
                        f"list_pending_tasks(limit=1000), {size:,} pending",
                        list_o,
                        list_r,
                        n,
                        1,
                    )
                )

    async def claim_many(self) -> None:
        n = 10 if self.opts.quick else 50
        for c in (1, min(self.opts.callers, n)):
            async with self.pair(f"claim100-{c}") as (store, raw):
                ours = _tasks("o", n * 100, self.payload)
                raws = _tasks("r", n * 100, self.payload)
                for i in range(0, n * 100, 500):
                    await store.save_tasks(ours[i : i + 500])
                    await raw.save(raws[i : i + 500])

                async def claim_o(i: int) -> None:
                    await store.claim_tasks("bench", limit=100, lease_s=300)

                async def claim_r(i: int) -> None:
                    await raw.claim(100)

                self.add(
                    await _pair(
                        "redis", "claim_tasks(100)", claim_o, claim_r, n, c, per_call=100, unit="tasks"
                    )
                )

    async def lifecycle(self) -> None:
        n = 500 if self.opts.quick else 5000
        for c in (1, self.opts.callers):
            async with self.pair(f"life{c}") as (store, raw):
                ours = _tasks("o", n, self.payload)
                raws = _tasks("r", n, self.payload)
                rate_o = await _worker_lifecycle(store, ours, c)
                rate_r = await _raw_lifecycle(raw, raws, c)
                self.add(
                    Row(
                        backend="redis",
                        operation="lifecycle save->claim->complete (TaskWorker)",
                        callers=c,
                        unit="tasks",
                        p50_us=None,
                        p99_us=None,
                        rate=rate_o,
                        raw_rate=rate_r,
                        note=f"{c} saver(s), a TaskWorker of concurrency {c}; raw: {c} minimal loops",
                    )
                )

    async def bullmq(self) -> None:
        from ._bullmq import bullmq_lifecycle

        host, port = self._host_port()
        n = 500 if self.opts.quick else 5000
        rate, note = await bullmq_lifecycle(host, port, n, self.opts.callers)
        if rate is None:
            self.report.notes.append(note)
            return
        self.add(
            Row(
                backend="bullmq",
                operation="lifecycle add->process->complete (BullMQ Worker)",
                callers=self.opts.callers,
                unit="tasks",
                p50_us=None,
                p99_us=None,
                rate=rate,
                note=note,
            )
        )

    async def reap(self) -> None:
        n = 1000 if self.opts.quick else 10_000
        async with self.pair("reap") as (store, raw):
            ours = _tasks("o", n, self.payload)
            raws = _tasks("r", n, self.payload)
            for i in range(0, n, 500):
                await store.save_tasks(ours[i : i + 500])
                await raw.save(raws[i : i + 500])
            while await store.claim_tasks("bench", limit=500, lease_s=0.05):
                pass
            while await raw.scripts["claim"](
                keys=[raw.pending, raw.processing, raw.fence], args=[raw.task_prefix, 500, "raw", 50]
            ):
                pass
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            reaped = await store.reap_expired_leases()
            t_o = time.perf_counter() - t0
            t0 = time.perf_counter()
            reaped_r = await raw.reap()
            t_r = time.perf_counter() - t0
            self.add(
                Row(
                    backend="redis",
                    operation=f"reap_expired_leases, {n:,} expired",
                    callers=1,
                    unit="tasks",
                    p50_us=t_o * 1e6,
                    p99_us=None,
                    rate=reaped / t_o,
                    raw_p50_us=t_r * 1e6,
                    raw_rate=reaped_r / t_r,
                    note="one call; p50 is its whole duration",
                )
            )

    async def _used_memory(self) -> int:
        return int((await self.admin.info("memory"))["used_memory"])

    async def _aof_size(self) -> int | None:
        info = await self.admin.info("persistence")
        size = info.get("aof_current_size")
        return None if size is None else int(size)

    async def _rewrite(self) -> int | None:
        if await self._aof_size() is None:
            return None
        with contextlib.suppress(aioredis.ResponseError):
            await self.admin.bgrewriteaof()
        for _ in range(6000):
            info = await self.admin.info("persistence")
            if not int(info.get("aof_rewrite_in_progress", 0)) and not int(
                info.get("aof_rewrite_scheduled", 0)
            ):
                break
            await asyncio.sleep(0.05)
        return await self._aof_size()

    async def memory(self) -> None:
        n = 10_000 if self.opts.quick else 100_000
        before_conf = str((await self.admin.config_get("hash-max-listpack-value"))["hash-max-listpack-value"])
        variants: list[tuple[str, str | None]] = [
            (f"hash-max-listpack-value {before_conf} (the server's)", None)
        ]
        if self.server is not None and self.opts.listpack_value:
            other = "64" if before_conf != "64" else str(self.opts.listpack_value)
            variants.append((f"hash-max-listpack-value {other}", other))
        try:
            for label, value in variants:
                if value is not None:
                    await self.admin.config_set("hash-max-listpack-value", value)
                await self._memory_variant(label, n)
        finally:
            if self.server is not None:
                await self.admin.config_set("hash-max-listpack-value", before_conf)

    async def _memory_variant(self, label: str, n: int) -> None:
        what = f"mem-{len(self.report.memory)}"
        tasks = _tasks("m", n, self.payload)
        aof0 = await self._rewrite()
        gc.collect()
        used0 = await self._used_memory()
        async with self.pair(what) as (store, _raw):
            aof_live0 = await self._aof_size()
            for i in range(0, n, 500):
                await store.save_tasks(tasks[i : i + 500])
            used1 = await self._used_memory()
            aof_live1 = await self._aof_size()
            sample = [store.keys.task(t.task_id) for t in tasks[:: max(1, n // 100)]]
            hash_bytes = [int(await self.admin.memory_usage(k) or 0) for k in sample]
            encoding = await self.admin.object("encoding", sample[0])
        aof1 = await self._rewrite()
        entry: dict[str, Any] = {
            "variant": label,
            "tasks": n,
            "payload_bytes": PAYLOAD_BYTES,
            "ram_per_task": (used1 - used0) / n,
            "task_hash_bytes": statistics.mean(hash_bytes),
            "task_hash_encoding": str(encoding),
        }
        if aof_live0 is not None and aof_live1 is not None and aof0 is not None and aof1 is not None:
            entry["aof_per_task"] = (aof_live1 - aof_live0) / n
            entry["aof_per_task_after_rewrite"] = (aof1 - aof0) / n
        self.report.memory.append(entry)

    async def restart(self) -> None:
        """A second private server holding only the stored tasks: SIGKILL, restart, time to a get_task."""
        if self.server is None:
            self.report.notes.append("restart not measured: --store names a server the bench did not start")
            return
        n = 10_000 if self.opts.quick else 100_000
        server = RedisServer(conf_file=docker_file("redis.conf"))
        await asyncio.to_thread(server.start)
        try:
            cfg = StorageConfig.from_dict(
                {"type": "redis", "namespace": self.ns("restart"), "redis": {"url": server.url}}
            )
            tasks = _tasks("m", n, self.payload)
            async with await RedisAggregatorStore.open(cfg) as store:
                for i in range(0, n, 500):
                    await store.save_tasks(tasks[i : i + 500])
            await asyncio.to_thread(server.kill)
            t0 = time.perf_counter()
            await asyncio.to_thread(server.restart, 120.0)
            t_ready = time.perf_counter() - t0
            async with await RedisAggregatorStore.open(cfg) as store:
                await store.get_task("m-0")
            total = time.perf_counter() - t0
        finally:
            await asyncio.to_thread(server.stop)
        self.add(
            Row(
                backend="redis",
                operation=f"restart after SIGKILL with {n:,} tasks, to a served get_task",
                callers=1,
                unit="restarts",
                p50_us=total * 1e6,
                p99_us=None,
                rate=1 / total,
                note=f"redis-server up with its AOF loaded after {t_ready * 1000:.0f} ms",
            )
        )

    async def aclose(self) -> None:
        await self.admin.aclose()


async def _worker_lifecycle(store: Any, tasks: list[Task], callers: int) -> float:
    """Tasks/s: ``callers`` savers feed a TaskWorker of that concurrency until all are completed."""

    async def handler(_claimed: ClaimedTask) -> None:
        return None

    worker = TaskWorker(store, "bench-worker", handler, concurrency=callers, poll_interval_s=0.005)
    it = iter(tasks)

    async def saver() -> None:
        for task in it:
            await store.save_task(task)

    t0 = time.perf_counter()
    running = asyncio.create_task(worker.run())
    await asyncio.gather(*(saver() for _ in range(callers)))
    while worker.completed < len(tasks) and not running.done():  # noqa: ASYNC110 (polls a counter)
        await asyncio.sleep(0.002)
    wall = time.perf_counter() - t0
    await worker.stop()
    await running
    return len(tasks) / wall


async def _raw_lifecycle(raw: RawRedis, tasks: list[Task], callers: int) -> float:
    it = iter(tasks)

    async def loop() -> None:
        for task in it:
            await raw.save([task])
            for task_id, token in await raw.claim(1):
                await raw.complete(task_id, token)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(callers)))
    return len(tasks) / (time.perf_counter() - t0)


# -- the fake ---------------------------------------------------------------------------


async def _memory_rows(opts: BenchOptions, report: BenchReport) -> None:
    run = uuid.uuid4().hex[:8]
    payload = os.urandom(PAYLOAD_BYTES)
    n = 2000 if opts.quick else 20_000
    names: list[str] = []

    def store(what: str) -> MemoryAggregatorStore:
        names.append(f"bench-{run}-{what}")
        return MemoryAggregatorStore(names[-1])

    try:
        agg, base = store("single"), DictBaseline()
        ours, raws = _tasks("o", n, payload), _tasks("r", n, payload)
        held_o: list[ClaimedTask | None] = [None] * n
        held_r: list[tuple[str, int] | None] = [None] * n

        async def save_o(i: int) -> None:
            await agg.save_task(ours[i])

        async def save_r(i: int) -> None:
            await base.save(raws[i])

        async def get_o(i: int) -> None:
            await agg.get_task(ours[i].task_id)

        async def get_r(i: int) -> None:
            await base.get(raws[i].task_id)

        report.rows.append(await _pair("memory", "save_task", save_o, save_r, n, 1))
        report.rows.append(await _pair("memory", "get_task", get_o, get_r, n, 1))

        async def list_o(i: int) -> None:
            await agg.list_pending_tasks(limit=1000)

        report.rows.append(
            await _pair("memory", f"list_pending_tasks(limit=1000), {n:,} pending", list_o, None, 20, 1)
        )

        async def claim_o(i: int) -> None:
            got = await agg.claim_tasks("bench", limit=1, lease_s=300)
            held_o[i] = got[0] if got else None

        async def claim_r(i: int) -> None:
            got = await base.claim(1)
            held_r[i] = got[0] if got else None

        async def complete_o(i: int) -> None:
            h = held_o[i]
            if h is not None:
                await agg.complete_task(h.task.task_id, h.token)

        async def complete_r(i: int) -> None:
            h = held_r[i]
            if h is not None:
                await base.complete(*h)

        m = min(n, 2000)
        report.rows.append(
            await _pair("memory", f"claim_tasks(1), {n:,} in the namespace", claim_o, claim_r, m, 1)
        )
        report.rows.append(
            await _pair("memory", f"complete_task, {n:,} in the namespace", complete_o, complete_r, m, 1)
        )
        # claim+complete pairs/s in an empty namespace against one holding n pending tasks
        small, big = store("small"), store("big")
        await big.save_tasks(_tasks("b", n, payload))
        walls = [0.0, 0.0]
        for target in (small, big):
            await target.save_tasks(_tasks("p", 4 * 1000, payload))
        for _round in range(4):  # interleaved, so that load from elsewhere hits both alike
            for k, target in enumerate((small, big)):

                async def pair_call(i: int, target: MemoryAggregatorStore = target) -> None:
                    for h in await target.claim_tasks("bench", limit=1, lease_s=300):
                        await target.complete_task(h.task.task_id, h.token)

                _, wall = await _timed(pair_call, range(1000), 1)
                walls[k] += wall
        rates = [4000 / wall for wall in walls]
        report.rows.append(
            Row(
                backend="memory",
                operation=f"claim+complete pairs, {n:,} pending in the namespace",
                callers=1,
                unit="pairs",
                p50_us=None,
                p99_us=None,
                rate=rates[1],
                raw_rate=rates[0],
                note="raw: the same pairs in a namespace of 1,000",
            )
        )
        lifecycle_tasks = _tasks("l", 500 if opts.quick else 5000, payload)
        rate = await _worker_lifecycle(store("life"), lifecycle_tasks, opts.callers)
        report.rows.append(
            Row(
                backend="memory",
                operation="lifecycle save->claim->complete (TaskWorker)",
                callers=opts.callers,
                unit="tasks",
                p50_us=None,
                p99_us=None,
                rate=rate,
            )
        )
    finally:
        reset_memory_namespaces(*names)


# -- goals ------------------------------------------------------------------------------


def _find(report: BenchReport, backend: str, prefix: str, callers: int | None = 1) -> Row | None:
    for row in report.rows:
        if (
            row.backend == backend
            and row.operation.startswith(prefix)
            and (callers is None or row.callers == callers)
        ):
            return row
    return None


def _goals(report: BenchReport, opts: BenchOptions) -> list[Goal]:
    goals: list[Goal] = []
    for op in ("save_task", "get_task", "claim_tasks(1)", "complete_task"):
        row = _find(report, "redis", op)
        ratio = None if row is None else row.ratio
        goals.append(
            Goal(
                f"{op} p50 vs minimal raw call",
                "<= 1.25x",
                "-" if ratio is None else f"{ratio:.2f}x",
                None if ratio is None else ratio <= 1.25,
            )
        )
    many = _find(report, "redis", "save_tasks(100)", opts.callers)
    ceiling = _find(report, "redis", "save ceiling", None)
    if many and ceiling:
        share = many.rate / ceiling.rate
        goals.append(
            Goal(
                "save_tasks(100), 1 KB payloads, vs redis-benchmark ceiling",
                ">= 0.60",
                f"{share:.2f} ({many.rate:,.0f} vs {ceiling.rate:,.0f} tasks/s)",
                share >= 0.60,
            )
        )
    else:
        goals.append(Goal("save_tasks(100) vs redis-benchmark ceiling", ">= 0.60", "-", None, "not measured"))
    ours = _find(report, "redis", "lifecycle", opts.callers)
    bull = _find(report, "bullmq", "lifecycle", None)
    if ours and bull:
        times = ours.rate / bull.rate
        goals.append(
            Goal(
                f"lifecycle vs BullMQ, concurrency {opts.callers}",
                ">= 2x",
                f"{times:.2f}x ({ours.rate:,.0f} vs {bull.rate:,.0f} tasks/s)",
                times >= 2,
            )
        )
    else:
        goals.append(Goal("lifecycle vs BullMQ", ">= 2x", "-", None, "not measured: see the notes"))
    row = _find(report, "redis", "list_pending_tasks(limit=1000), 1,000")
    if row and row.p50_us is not None:
        goals.append(
            Goal(
                "list_pending_tasks(limit=1000) p50",
                "< 5 ms",
                f"{row.p50_us / 1000:.1f} ms",
                row.p50_us < 5000,
            )
        )
    default = report.memory[0] if report.memory else None  # the server's own setting
    if default:
        ram = default["ram_per_task"]
        goals.append(
            Goal(
                "Redis RAM per task, 1 KB payload",
                f"<= {PAYLOAD_BYTES + 400} B",
                f"{ram:,.0f} B",
                ram <= PAYLOAD_BYTES + 400,
            )
        )
        aof = default.get("aof_per_task_after_rewrite")
        if aof is not None:
            goals.append(
                Goal(
                    "AOF bytes per task after rewrite",
                    f"<= {PAYLOAD_BYTES + 300} B",
                    f"{aof:,.0f} B",
                    aof <= PAYLOAD_BYTES + 300,
                )
            )
    row = _find(report, "memory", "save_task")
    if row:
        goals.append(Goal("fake save_task", ">= 100k/s", f"{row.rate / 1000:,.0f}k/s", row.rate >= 100_000))
    row = _find(report, "memory", "claim+complete pairs")
    if row and row.raw_rate:
        share = row.rate / row.raw_rate
        goals.append(
            Goal(
                "fake claim+complete, big namespace vs small",
                "no slowdown (>= 0.9)",
                f"{share:.2f} ({row.rate:,.0f} vs {row.raw_rate:,.0f} pairs/s)",
                share >= 0.9,
            )
        )
    row = _find(report, "redis", "restart")
    if row and row.p50_us is not None:
        goals.append(
            Goal(
                "restart to a served get_task",
                "<= 1 s",
                f"{row.p50_us / 1e6:.2f} s ({row.operation})",
                row.p50_us <= 1e6,
            )
        )
    return goals


def _machine() -> dict[str, str]:
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError), open("/proc/meminfo", encoding="ascii") as fh:
        mem = f"{int(fh.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpus": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def run_bench(opts: BenchOptions, command: str = "ponos-redis bench") -> BenchReport:
    """Run the bench and return its report (see :class:`BenchOptions`)."""
    report = BenchReport(command=command, machine=_machine(), server={})
    if opts.memory:
        await _memory_rows(opts, report)
    if opts.redis:
        server: RedisServer | None = None
        url = opts.store
        if url is None:
            if not redis_server_available():
                report.notes.append(
                    "redis-server is not on PATH and no --store was given: Redis not measured"
                )
            else:
                server = RedisServer(conf_file=docker_file("redis.conf"))
                await asyncio.to_thread(server.start)
                url = server.url
        if url is not None:
            bench = _RedisBench(opts, url, report, server)
            try:
                await bench.run()
            finally:
                await bench.aclose()
                if server is not None:
                    await asyncio.to_thread(server.stop)
    if not opts.bullmq:
        report.notes.append("BullMQ comparison not run (pass --bullmq; it needs node and npm install bullmq)")
    report.goals = _goals(report, opts)
    return report
