"""One executor of the simulation: ``python -m ponos_redis.simulate.executor <spec>``.

It runs the runtime's :class:`ExecutorRuntime` on its own executor namespace,
deploys a (fake) performer for the run's AVS, recovers the tasks a previous
incarnation left inflight, and answers the fake operator RPC on its fixed
loopback port (:mod:`._operators`).

Its performer's side effect is the execution log (:mod:`._execlog`; in a soak
the file ``<execution_log_dir>/executions-<namespace>.jsonl``): one entry per
execution, written before the answer goes back to the aggregator. A task
delivered again is answered without running again: ``mark_task_processed``
says it was seen (``deduplicated``). The one exception the runtime allows is
a task whose execution was interrupted by a crash (its inflight record says
so after ``recover()``): it runs again when delivered again. The performer
then looks in the execution log first, as a performer with a real side effect
would consult that side effect's own record, and does not repeat one that
was already made.

With ``metrics_port`` in its spec (``simulate --metrics-port``) its store is
wrapped by ``instrument()``, a ``RuntimeCollector`` reads its runtime, and it
serves them on that loopback port (:mod:`._exporters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .._open import open_executor_store
from ..config import StorageConfig
from ..interfaces import ExecutorStore
from ..models import Task
from ..runtime import ExecutorRuntime, RuntimeEvent
from ._chains import AVS_ADDRESS
from ._child import Emit, child_main
from ._execlog import ExecutionLog, FileExecutionLog, RedisExecutionLog
from ._guard import StoreGuard
from ._jsonl import JsonLineServer, serve

if TYPE_CHECKING:
    from ._exporters import ProcessMetrics

__all__ = ["ExecutorNode"]

log = logging.getLogger("ponos_redis.simulate.executor")

_STATS_EVERY_S = 0.5
TRACKED_EVENTS = frozenset({"deduplicated", "reexecuted", "failed"})


def signature(operator: str, task: Task) -> bytes:
    """The (fake) signed result: a pure function of the operator and the task."""
    return hashlib.sha256(operator.encode() + task.task_id.encode() + task.payload).digest()


class ExecutorNode:
    """An executor; :meth:`run` until ``stop`` is set, :meth:`crash` to sever it."""

    def __init__(
        self, spec: dict[str, Any], emit: Emit, *, execution_log: ExecutionLog | None = None
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.namespace: str = spec["namespace"]
        self.operator: str = spec["operator"]
        self.config = StorageConfig.from_dict(spec["storage"])
        self._shared_log = execution_log
        self._guard: StoreGuard | None = None
        self._server: JsonLineServer | None = None
        self._crashed = False
        self._already_done: set[str] = set()  # interrupted tasks whose side effect was made
        self.runtime: ExecutorRuntime | None = None
        self.log: ExecutionLog | None = None
        self.metrics: ProcessMetrics | None = None

    def crash(self) -> None:
        self._crashed = True
        if self._guard is not None:
            self._guard.sever()
        if self._server is not None:
            self._server.close()

    async def _perform(self, task: Task) -> bytes:
        assert self.log is not None
        if self._crashed:  # in-process only: a killed executor makes no side effect any more
            raise RuntimeError("this executor was killed")
        if task.task_id in self._already_done:
            self._already_done.discard(task.task_id)
        else:
            await self.log.record(self.namespace, task.task_id, uuid.uuid4().hex)
        return signature(self.operator, task)

    async def _duplicate(self, task: Task) -> bytes:
        return signature(self.operator, task)

    def _on_event(self, event: RuntimeEvent) -> None:
        if event.kind in TRACKED_EVENTS and not self._crashed:
            self.emit(
                {"kind": "rt", "component": event.component, "event": event.kind, "subject": event.subject}
            )

    async def _serve(self, request: dict[str, Any]) -> dict[str, Any]:
        runtime = self.runtime
        if runtime is None or self._crashed or request.get("op") != "execute":
            return {"ok": False, "error": "not ready" if runtime is None else "unknown request"}
        task = msgspec.json.decode(str(request["task"]), type=Task)
        result, executed = await runtime.handle(task, aggregator_address=str(request.get("aggregator", "?")))
        return {
            "ok": True,
            "executor": self.spec["name"],
            "signature": result.hex(),
            "deduplicated": not executed,
        }

    async def run(self, stop: asyncio.Event) -> int:
        store: ExecutorStore | None = None
        try:
            if self._shared_log is not None:
                self.log = self._shared_log
            elif self.spec.get("execution_log_dir"):
                self.log = FileExecutionLog(Path(self.spec["execution_log_dir"]))
            else:
                assert self.config.redis is not None
                self.log = RedisExecutionLog(self.config.redis)
            if self.spec.get("metrics_port") is not None:
                from ._exporters import ProcessMetrics  # only now: prometheus-client

                self.metrics = ProcessMetrics(int(self.spec["metrics_port"]))
            store = await open_executor_store(self.config, namespace=self.namespace)
            self._guard = StoreGuard(store if self.metrics is None else self.metrics.executor(store))
            runtime = ExecutorRuntime(
                self._guard.executor_store,
                self.operator,
                performer=self._perform,
                duplicate_result=self._duplicate,
                on_event=self._on_event,
            )
            await runtime.deploy_performers([AVS_ADDRESS])
            interrupted = await runtime.recover()
            if interrupted:
                logged = {task_id for task_id, _ in await self.log.read(self.namespace)}
                self._already_done = {r.task_id for r in interrupted} & logged
            self.runtime = runtime
            if self.metrics is not None:
                self.metrics.add(runtime)
                self.metrics.start()
            self._server = await serve(self._serve, int(self.spec["port"]))
            self.emit({"kind": "ready", "owner": self.operator, "recovered": len(interrupted)})
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _STATS_EVERY_S)
                self._stats()
            return 0
        finally:
            if self.metrics is not None:
                self.metrics.close()
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2.0)
            if store is not None:
                with contextlib.suppress(Exception):
                    await store.close()
            if self.log is not None and self.log is not self._shared_log:
                await self.log.close()

    def _stats(self) -> None:
        runtime = self.runtime
        if runtime is None or self._crashed:
            return
        self.emit({"kind": "stats", "executed": runtime.executed, "deduplicated": runtime.deduplicated})


async def main(spec: dict[str, Any], stop: asyncio.Event, emit: Emit) -> int:
    return await ExecutorNode(spec, emit).run(stop)


if __name__ == "__main__":
    child_main(main)
