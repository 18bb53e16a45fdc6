"""One aggregator replica of the simulation: ``python -m ponos_redis.simulate.replica <spec>``.

For each aggregator namespace it runs the runtime's :class:`ChainPoller` (one
per chain: the chain lease decides which replica polls), :class:`TaskWorker`
and :class:`Reaper`, on one store per namespace opened with the run's config.

The worker's handler stands in for the aggregator's work on a task:

1. wait until the task's block is final: ``MAX_REORG_DEPTH`` blocks deep, or
   the chain has stopped (operators sign only what a reorg can no longer undo;
   without this wait a task completed just before a reorg would be a completed
   task of an orphaned block, which the verdict reports);
2. check that the task is still on the canonical chain; if a reorg orphaned
   it, raise (the task is failed with retry; the poller fails it for good
   with ``fail_orphaned_tasks`` once it sees the reorg, which also revokes
   this worker's token);
3. send it to every executor over the fake operator RPC and wait for the
   task's threshold of signatures (:mod:`._operators`).

The whole handler has a time budget (the finality wait, the operators' time
and a margin): past it, it raises and the task is failed with retry.

Its owner id is ``<name>.<incarnation>``: a replica restarted after a SIGKILL
is a new owner, as a restarted pod is, and must wait for the old leases to
lapse like everybody else.

With ``metrics_port`` in its spec (``simulate --metrics-port``) its stores are
wrapped by ``instrument()``, a ``RuntimeCollector`` reads its services, and it
serves them on that loopback port (:mod:`._exporters`); without it,
prometheus-client is not imported.

Each completion the store acknowledged (``complete_task`` returned) is a line
of its completion log (``completion_log`` in its spec, :mod:`._execlog`).

Reports (JSON lines on stdout, :mod:`._child`): ``ready``; ``rt`` for the
runtime events the coordinator tracks (lease acquired / lost, reorg, stale
...); ``stale_completion`` when the store refuses a completion; ``stats``
snapshots for the live display.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._open import open_aggregator_store
from ..config import StorageConfig
from ..interfaces import AggregatorStore
from ..models import ClaimedTask
from ..runtime import ChainPoller, FakeChain, Reaper, RuntimeEvent, TaskWorker
from ._chains import MAX_REORG_DEPTH, ChainSpec
from ._child import Emit, child_main
from ._execlog import CompletionLog
from ._guard import StoreGuard
from ._operators import CALL_TIMEOUT_S, OperatorClient

if TYPE_CHECKING:
    from ._exporters import ProcessMetrics

__all__ = ["ReplicaNode", "TRACKED_EVENTS"]

log = logging.getLogger("ponos_redis.simulate.replica")

# Runtime events worth a message each; the rest are counted in the stats snapshots.
TRACKED_EVENTS = frozenset(
    {"lease_acquired", "lease_lost", "reorg", "orphaned", "stale", "abandoned", "error"}
)
_STATS_EVERY_S = 0.5


class NotOnChain(Exception):
    """The task's block is no longer on the canonical chain: a reorg orphaned it."""


class ReplicaNode:
    """An aggregator replica; :meth:`run` until ``stop`` is set, :meth:`crash` to sever it."""

    def __init__(self, spec: dict[str, Any], emit: Emit) -> None:
        self.spec = spec
        self.emit = emit
        self.owner = f"{spec['name']}.{spec['incarnation']}"
        self.config = StorageConfig.from_dict(spec["storage"])
        self.chain_specs = [ChainSpec.from_dict(c) for c in spec["chains"]]
        self.guards: list[StoreGuard] = []
        self.workers: list[TaskWorker] = []
        self.pollers: list[ChainPoller] = []
        self.reapers: list[Reaper] = []
        self.metrics: ProcessMetrics | None = None
        self.completions: CompletionLog | None = None
        self._crashed = False

    def crash(self) -> None:
        self._crashed = True
        for guard in self.guards:
            guard.sever()

    def _on_event(self, namespace: str) -> Any:
        def forward(event: RuntimeEvent) -> None:
            if event.kind in TRACKED_EVENTS and not self._crashed:
                self.emit(
                    {
                        "kind": "rt",
                        "ns": namespace,
                        "component": event.component,
                        "event": event.kind,
                        "subject": event.subject,
                        "detail": event.detail,
                        "owner": self.owner,
                    }
                )

        return forward

    def _on_stale_completion(self, namespace: str) -> Any:
        def report(task_id: str) -> None:
            self.emit({"kind": "stale_completion", "ns": namespace, "task": task_id, "owner": self.owner})

        return report

    def _handler(self, chains: dict[int, tuple[ChainSpec, FakeChain]], operators: OperatorClient) -> Any:
        signature_timeout_s = float(self.spec["signature_timeout_s"])

        async def handle(claimed: ClaimedTask) -> None:
            task = claimed.task
            spec, chain = chains[task.chain_id]
            # The chain is a function of time: the block is final once the head is
            # MAX_REORG_DEPTH blocks above it (or the chain has stopped), at a known instant.
            final_step = min(task.block_number + MAX_REORG_DEPTH, spec.final_step)
            final_at = spec.genesis_time + (final_step + 0.5) * spec.block_time_s
            wait_s = max(0.0, final_at - time.time())
            # Every handler ends: the finality wait plus the operators' time, plus a margin.
            async with asyncio.timeout(wait_s + signature_timeout_s + 2 * CALL_TIMEOUT_S):
                await asyncio.sleep(wait_s)
                block = await chain.block(task.block_number)
                if block is None or task.task_id not in {t.task_id for t in block.tasks}:
                    raise NotOnChain(
                        f"block {task.block_number} of chain {task.chain_id} was replaced by a reorg"
                    )
                await operators.handle(claimed)

        return handle

    def _on_completed(self, namespace: str) -> Any:
        def acknowledged(task_id: str, token: int) -> None:
            if self.completions is not None and not self._crashed:
                self.completions.acknowledged(namespace, task_id, token)

        return acknowledged

    async def _open(self) -> dict[str, AggregatorStore]:
        stores: dict[str, AggregatorStore] = {}
        for namespace in self.spec["namespaces"]:
            store = await open_aggregator_store(self.config, namespace=namespace)
            measured = store if self.metrics is None else self.metrics.aggregator(store)
            guard = StoreGuard(measured, self._on_stale_completion(namespace), self._on_completed(namespace))
            self.guards.append(guard)
            stores[namespace] = store
        return stores

    async def run(self, stop: asyncio.Event) -> int:
        spec = self.spec
        stores: dict[str, AggregatorStore] = {}
        operators = OperatorClient(
            list(spec["executor_ports"]), self.owner, signature_timeout_s=float(spec["signature_timeout_s"])
        )
        tasks: list[asyncio.Task[None]] = []
        stopper: asyncio.Task[bool] | None = None
        try:
            if spec.get("metrics_port") is not None:
                from ._exporters import ProcessMetrics  # only now: prometheus-client

                self.metrics = ProcessMetrics(int(spec["metrics_port"]))
            if spec.get("completion_log"):
                self.completions = CompletionLog(Path(spec["completion_log"]), self.owner)
            stores = await self._open()
            for guard in self.guards:
                ns = guard.namespace
                store, events = guard.store, self._on_event(ns)
                chains = {c.chain_id: (c, c.build()) for c in self.chain_specs if c.namespace == ns}
                self.workers.append(
                    TaskWorker(
                        store,
                        self.owner,
                        self._handler(chains, operators),
                        concurrency=int(spec["concurrency"]),
                        lease_s=float(spec["task_lease_s"]),
                        poll_interval_s=float(spec["worker_poll_s"]),
                        on_event=events,
                    )
                )
                self.reapers.append(
                    Reaper(store, self.owner, interval_s=float(spec["reaper_interval_s"]), on_event=events)
                )
                for chain_spec, chain in chains.values():
                    self.pollers.append(
                        ChainPoller(
                            store,
                            chain,
                            self.owner,
                            lease_ttl_s=float(spec["chain_lease_s"]),
                            poll_interval_s=chain_spec.block_time_s / 2,
                            start_block=0,
                            on_event=events,
                        )
                    )
            services: list[TaskWorker | Reaper | ChainPoller] = [*self.pollers, *self.workers, *self.reapers]
            if self.metrics is not None:
                self.metrics.add(*services)
                self.metrics.start()
            tasks = [asyncio.create_task(s.run(), name=f"{self.owner} {type(s).__name__}") for s in services]
            self.emit({"kind": "ready", "owner": self.owner})
            stopper = asyncio.create_task(stop.wait())
            while not stop.is_set():
                done, _ = await asyncio.wait(
                    [stopper, *tasks], timeout=_STATS_EVERY_S, return_when="FIRST_COMPLETED"
                )
                self._stats()
                for task in done - {stopper}:  # a service ended before it was asked to
                    error = None if task.cancelled() else task.exception()
                    raise error or RuntimeError(f"{task.get_name()} stopped by itself")
            for service in services:
                service.request_stop()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10.0)
            self._stats()
            return 0
        finally:
            if stopper is not None:
                stopper.cancel()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await operators.close()
            if self.completions is not None:
                self.completions.close()
            if self.metrics is not None:
                self.metrics.close()
            for store in stores.values():
                with contextlib.suppress(Exception):
                    await store.close()

    def _stats(self) -> None:
        if self._crashed:
            return
        self.emit(
            {
                "kind": "stats",
                "owner": self.owner,
                "claimed": sum(w.claimed for w in self.workers),
                "completed": sum(w.completed for w in self.workers),
                "failed": sum(w.failed for w in self.workers),
                "blocks": sum(p.blocks for p in self.pollers),
            }
        )


async def main(spec: dict[str, Any], stop: asyncio.Event, emit: Emit) -> int:
    return await ReplicaNode(spec, emit).run(stop)


if __name__ == "__main__":
    child_main(main)
