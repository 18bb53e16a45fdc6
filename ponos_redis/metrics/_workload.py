"""A small aggregator workload with every metric on, for the end-to-end test with
a real Prometheus (tests/metrics) and the plot of docs/observability.md
(scripts/observability_plot.py). Not part of the public API.

Each replica has its own store (instrumented), a ChainPoller on a shared
FakeChain that follows the wall clock, a TaskWorker and a Reaper; one
NamespaceCollector reads the namespace, as ``metrics serve`` would. Optional
episodes make the graphs worth looking at: a slowdown (handlers take longer,
so the backlog grows, then drains) and a stalled replica (it claims tasks and
goes silent past its lease: the reaper returns them, and its late completion
is refused as stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from prometheus_client import CollectorRegistry

from ..errors import PonosStorageError
from ..interfaces import AggregatorStore
from ..models import ClaimedTask
from ..runtime import ChainPoller, FakeChain, Reaper, TaskWorker
from ._namespace import NamespaceCollector
from ._runtime import RuntimeCollector
from ._store import instrument

__all__ = ["Workload", "WorkloadSettings"]

AVS = "0x" + "ab" * 20


class HandlerError(Exception):
    """A handler failure the workload injects."""


@dataclass(frozen=True, kw_only=True)
class WorkloadSettings:
    """What the workload does (times in seconds from its start)."""

    replicas: int = 2
    chain_id: int = 17000
    block_time_s: float = 0.25
    tasks_per_block: tuple[int, int] = (1, 4)
    reorg_every: tuple[int, int] | None = (40, 80)
    concurrency: int = 4
    lease_s: float = 2.0
    handler_s: tuple[float, float] = (0.05, 0.3)
    fail_ratio: float = 0.03
    slowdown: tuple[float, float] | None = None  # handlers 6x slower in [start, end)
    stall_at_s: float | None = None  # a replica claims 5 tasks and stalls past their lease
    collect_interval_s: float = 0.5
    task_sla_s: float = 10.0
    seed: int = 1


class Workload:
    """Replicas on one namespace, with their metrics in ``registry``.

    >>> async with Workload(open_store, registry, WorkloadSettings()) as workload:  # doctest: +SKIP
    ...     await workload.run(20.0)
    """

    def __init__(
        self,
        open_store: Callable[[], Awaitable[AggregatorStore]],
        registry: CollectorRegistry,
        settings: WorkloadSettings | None = None,
    ) -> None:
        self.open_store = open_store
        self.registry = registry
        self.settings = settings or WorkloadSettings()
        self.stores: list[AggregatorStore] = []
        self.services: list[ChainPoller | TaskWorker | Reaper] = []
        self.namespace_collector: NamespaceCollector | None = None
        self.runtime_collector: RuntimeCollector | None = None
        self._rng = random.Random(self.settings.seed)
        self._started = 0.0
        self._stop_collecting = asyncio.Event()
        self._collecting: asyncio.Task[None] | None = None
        self.stale_refusals = 0

    async def __aenter__(self) -> Self:
        s = self.settings
        genesis = time.time()
        for i in range(s.replicas):
            store = instrument(await self.open_store(), self.registry)
            self.stores.append(store)
            name = f"replica-{i + 1}"
            chain = FakeChain(
                s.chain_id,
                seed=s.seed,
                avs_address=AVS,
                tasks_per_block=s.tasks_per_block,
                reorg_every=s.reorg_every,
                block_time_s=s.block_time_s,
                genesis_time=genesis,
                clock=time.time,
            )
            self.services += [
                ChainPoller(store, chain, name, lease_ttl_s=3.0, poll_interval_s=0.2),
                TaskWorker(store, name, self._handle, concurrency=s.concurrency, lease_s=s.lease_s),
                Reaper(store, name, interval_s=1.0),
            ]
        self.runtime_collector = RuntimeCollector(*self.services, registry=self.registry)
        self.namespace_collector = NamespaceCollector(
            self.stores[0], registry=self.registry, task_sla_s=s.task_sla_s, required_replicas=0
        )
        await self.namespace_collector.collect_once()
        self._collecting = asyncio.create_task(
            self.namespace_collector.run(s.collect_interval_s, stop=self._stop_collecting)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_collecting.set()
        if self._collecting is not None:
            await self._collecting
        for collector in (self.namespace_collector, self.runtime_collector):
            if collector is not None:
                collector.unregister()
        for store in self.stores:
            await store.close()

    async def run(self, duration_s: float) -> None:
        """Run every replica for ``duration_s``, then stop them (they release their tasks)."""
        self._started = time.monotonic()
        runs = [asyncio.create_task(service.run()) for service in self.services]
        stall = None
        if self.settings.stall_at_s is not None:
            stall = asyncio.create_task(self._stall(self.settings.stall_at_s))
        try:
            await asyncio.sleep(duration_s)
        finally:
            for service in self.services:
                service.request_stop()
            await asyncio.gather(*runs, return_exceptions=True)
            if stall is not None:
                stall.cancel()
                await asyncio.gather(stall, return_exceptions=True)
        assert self.namespace_collector is not None
        await self.namespace_collector.collect_once()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    async def _handle(self, claimed: ClaimedTask) -> None:
        s = self.settings
        seconds = self._rng.uniform(*s.handler_s)
        if s.slowdown is not None and s.slowdown[0] <= self._elapsed() < s.slowdown[1]:
            seconds *= 6
        await asyncio.sleep(seconds)
        if self._rng.random() < s.fail_ratio:
            raise HandlerError(f"injected failure of {claimed.task.task_id}")

    async def _stall(self, at_s: float) -> None:
        """A replica claims tasks, stalls past the lease, then tries to complete them."""
        await asyncio.sleep(at_s)
        store = self.stores[-1]
        claimed: list[ClaimedTask] = []
        for _ in range(100):  # bounded: the workers may have taken every pending task
            claimed = await store.claim_tasks("stalled-replica", limit=5, lease_s=1.0)
            if claimed:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(4.0)  # the reaper returns them meanwhile
        for item in claimed:
            with contextlib.suppress(PonosStorageError):
                try:
                    await store.complete_task(item.task.task_id, item.token)
                except PonosStorageError:
                    self.stale_refusals += 1
                    raise
