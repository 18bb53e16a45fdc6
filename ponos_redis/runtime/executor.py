"""ExecutorRuntime: execute each task at most once per operator, survive restarts.

Delivery (``handle``):

1. ``mark_task_processed(task_id)`` first, atomically (exactly one of any
   number of concurrent deliveries gets True).
2. False: the task was delivered before. It is not executed again; the
   answer is deterministic: the result of the first execution if it is
   still running in this process (awaited) or remembered (a bounded cache),
   else ``duplicate_result(task)`` when given (e.g. recompute a pure
   result), else ``b""``. Counted ``deduplicated``.
3. True: save an ``InflightTask`` (status ``running``), run the performer,
   delete the inflight record, return ``(result, True)``.

A performer that raises: the inflight record is deleted and the error goes
to the caller. The task stays marked, so a redelivery is answered as a
duplicate: a failed execution is final for this operator (until the marker
expires after ``processed_ttl_s``).

Restart (``recover``): an inflight record found at start-up belongs to a
task that was marked processed and never answered: the process died (or was
cancelled) while the performer ran. Whether the performer finished is
unknown and no result reached the aggregator. ``recover()`` marks each such
record ``interrupted`` (and returns them); when the aggregator delivers that
task again, ``handle`` executes it once more instead of answering as a
duplicate, then deletes the record. This is the only case in which a marked
task runs again, so performers must tolerate one re-execution after a crash
(a Ponos performer computes its result from the payload, so a repeat gives
the same answer). The inflight record carries no payload, so nothing can be
re-run before the task is delivered again. Call ``recover()`` once at start-up,
before handling deliveries; it leaves records of other operators alone.

A mark whose first attempt raised ``StoreUnavailableError`` and whose
repetition answered False is ambiguous (the first attempt may have been
applied): the delivery is treated as the first and executed, and counted
``ambiguous``; liveness wins over at-most-once in that narrow case.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from ..errors import NotFoundError, StoreUnavailableError
from ..interfaces import ExecutorStore
from ..models import Deployment, DeploymentStatus, InflightTask, PerformerState, Task
from ._retry import RetryPolicy, repeat_on_unavailable
from ._service import EventCallback, RuntimeEvent

__all__ = ["INFLIGHT_INTERRUPTED", "INFLIGHT_RUNNING", "ExecutorRuntime", "Performer"]

T = TypeVar("T")

Performer = Callable[[Task], Awaitable[bytes]]

INFLIGHT_RUNNING = "running"
INFLIGHT_INTERRUPTED = "interrupted"

_log = logging.getLogger("ponos_redis.runtime.executor")


def _now() -> datetime:
    return datetime.now(UTC)


class ExecutorRuntime:
    """Executes delivered tasks on an operator with de-duplication and crash recovery.

    Args:
        store: the executor store.
        operator_address: this operator's address (``0x`` + 40 hex digits).
        performer: ``async def performer(task) -> bytes``; computes a task's result.
        duplicate_result: the answer to a duplicate delivery when the first
            result is not known in this process; default: ``b""``.
        clock: returns the current aware UTC datetime (``received_at``,
            deployment times); default the system clock.
        result_cache_size: results remembered for duplicate deliveries.
        retry: repetitions after ``StoreUnavailableError``; default ``RetryPolicy()``.
        on_event: called with a :class:`RuntimeEvent` for ``"executed"``,
            ``"deduplicated"``, ``"reexecuted"``, ``"failed"``, ``"deployed"`` and
            ``"deploy_failed"`` (subject: the task id or AVS; detail: the deployment id).
        artifact_registry: recorded for the (fake) performers that
            ``deploy_performers`` deploys.
        artifact_digest: recorded for them too.

    Attributes (counters):
        executed: performer runs that returned (re-executions included).
        deduplicated: deliveries answered without executing.
        reexecuted: interrupted tasks executed again on redelivery.
        failed: performer runs that raised.
        ambiguous: deliveries executed although the mark's outcome was unknown.
        performers: the performer state of each deployed AVS, by address.
    """

    component = "executor"

    def __init__(
        self,
        store: ExecutorStore,
        operator_address: str,
        *,
        performer: Performer,
        duplicate_result: Performer | None = None,
        clock: Callable[[], datetime] | None = None,
        result_cache_size: int = 1024,
        retry: RetryPolicy | None = None,
        on_event: EventCallback | None = None,
        artifact_registry: str = "registry.local/fake-performer",
        artifact_digest: str = "sha256:" + "0" * 64,
    ) -> None:
        if result_cache_size < 0:
            raise ValueError("result_cache_size must not be negative")
        self.store = store
        self.operator_address = operator_address.lower()
        self.performer = performer
        self.duplicate_result = duplicate_result
        self.clock = clock or _now
        self.retry = retry or RetryPolicy()
        self.artifact_registry = artifact_registry
        self.artifact_digest = artifact_digest
        self._on_event = on_event
        self._cache_size = result_cache_size
        self._results: OrderedDict[str, bytes] = OrderedDict()
        self._running: dict[str, asyncio.Future[bytes]] = {}
        self.performers: dict[str, PerformerState] = {}
        self.executed = 0
        self.deduplicated = 0
        self.reexecuted = 0
        self.failed = 0
        self.ambiguous = 0

    # -- delivery ------------------------------------------------------------------------

    async def handle(self, task: Task, *, aggregator_address: str) -> tuple[bytes, bool]:
        """Execute a delivered task unless it was delivered before.

        Args:
            task: the task as the aggregator sent it.
            aggregator_address: who sent it (recorded in the inflight record).

        Returns:
            ``(result, executed_now)``: ``executed_now`` is False for a duplicate
            delivery, whose result is the deterministic answer described in the
            module docstring.

        Raises:
            Exception: whatever the performer raised (the task stays marked).
            StoreUnavailableError: the mark could not be made (nothing was executed).
            NamespaceLostError: the store lost the namespace.
        """
        task_id = task.task_id
        first = self._running.get(task_id)
        if first is not None:  # delivered again while the first delivery runs here
            result = await asyncio.shield(first)
            self._deduplicated(task_id)
            return result, False
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._running[task_id] = future
        try:
            result, executed = await self._handle(task, aggregator_address)
        except BaseException as exc:
            if not future.done():
                error = exc if isinstance(exc, Exception) else RuntimeError(f"task {task_id}: cancelled")
                future.set_exception(error)
                future.exception()  # retrieved: waiters, if any, still get it
            raise
        finally:
            self._running.pop(task_id, None)
        if not future.done():
            future.set_result(result)
        return result, executed

    async def _handle(self, task: Task, aggregator_address: str) -> tuple[bytes, bool]:
        task_id = task.task_id
        ambiguous = False

        def note(_exc: StoreUnavailableError) -> None:
            nonlocal ambiguous
            ambiguous = True

        marked = await repeat_on_unavailable(
            lambda: self.store.mark_task_processed(task_id),
            what=f"mark_task_processed({task_id})",
            policy=self.retry,
            on_repeat=note,
            logger=_log,
        )
        if not marked:
            if ambiguous:
                self.ambiguous += 1
                _log.warning("task %s: mark outcome was unknown; executing it", task_id)
            else:
                record = await self._inflight(task_id)
                if record is None or record.status != INFLIGHT_INTERRUPTED:
                    self._deduplicated(task_id)
                    return await self._duplicate_answer(task), False
                self.reexecuted += 1
                _log.info("task %s: interrupted by a restart; executing it again", task_id)
                self._emit("reexecuted", task_id)
        return await self._execute(task, aggregator_address), True

    async def _execute(self, task: Task, aggregator_address: str) -> bytes:
        task_id = task.task_id
        record = InflightTask(
            task_id=task_id,
            avs_address=task.avs_address,
            operator_address=self.operator_address,
            received_at=self.clock(),
            status=INFLIGHT_RUNNING,
            aggregator_address=aggregator_address,
            operator_set_id=task.operator_set_id,
        )
        try:
            await self._call("save_inflight_task", lambda: self.store.save_inflight_task(record))
        except StoreUnavailableError:
            # Executing without the record only loses crash recovery for this one run.
            _log.warning("task %s: inflight record not saved; executing anyway", task_id)
        try:
            result = await self.performer(task)
        except asyncio.CancelledError:
            await self._mark_interrupted(record)
            raise
        except Exception as exc:
            self.failed += 1
            self._emit("failed", task_id, f"{type(exc).__name__}: {exc}")
            await self._drop_inflight(task_id)
            raise
        self.executed += 1
        self._remember(task_id, result)
        await self._drop_inflight(task_id)
        self._emit("executed", task_id)
        return result

    async def _duplicate_answer(self, task: Task) -> bytes:
        cached = self._results.get(task.task_id)
        if cached is not None:
            return cached
        if self.duplicate_result is not None:
            return await self.duplicate_result(task)
        return b""

    # -- restart -------------------------------------------------------------------------

    async def recover(self) -> list[InflightTask]:
        """Find the tasks a previous run left inflight and mark them ``interrupted``.

        Returns:
            this operator's interrupted tasks (each executed again when redelivered).
        """
        records = await self._call("list_inflight_tasks", self.store.list_inflight_tasks)
        interrupted: list[InflightTask] = []
        for record in records:
            if record.operator_address != self.operator_address or record.task_id in self._running:
                continue
            if record.status != INFLIGHT_INTERRUPTED:
                record = msgspec.structs.replace(record, status=INFLIGHT_INTERRUPTED)
                await self._call("save_inflight_task", self._saver(record))
            interrupted.append(record)
        if interrupted:
            _log.warning(
                "%d task(s) were interrupted by a restart; each runs again if redelivered", len(interrupted)
            )
        return interrupted

    # -- performers ------------------------------------------------------------------------

    async def deploy_performers(self, avs_addresses: Iterable[str]) -> list[PerformerState]:
        """Deploy (fake) performers for each AVS, recording deployments and performer state.

        For each AVS: a deployment is saved ``pending``, moves to ``deploying``,
        the performer state is saved (healthy, ``running``) and the deployment
        moves to ``running``; on an error it moves to ``failed`` (with the
        error) and the error is raised.

        Returns:
            the performer states, in the order of ``avs_addresses``.
        """
        states: list[PerformerState] = []
        for avs in avs_addresses:
            avs = avs.lower()
            performer_id = f"performer-{avs}"
            now = self.clock()
            deployment = Deployment(
                deployment_id=f"{performer_id}-{uuid.uuid4().hex[:12]}",
                avs_address=avs,
                artifact_registry=self.artifact_registry,
                artifact_digest=self.artifact_digest,
                status=DeploymentStatus.PENDING,
                started_at=now,
            )
            dep_id = deployment.deployment_id
            await self._call("save_deployment", self._saver(deployment))
            try:
                await self._update(dep_id, DeploymentStatus.DEPLOYING)
                state = PerformerState(
                    performer_id=performer_id,
                    avs_address=avs,
                    resource_id=f"fake-{dep_id}",
                    status="running",
                    artifact_registry=self.artifact_registry,
                    artifact_digest=self.artifact_digest,
                    artifact_tag="latest",
                    deployment_mode="fake",
                    created_at=now,
                    last_health_check=now,
                    container_healthy=True,
                    application_healthy=True,
                    container_endpoint=f"fake://{performer_id}",
                    container_hostname=performer_id,
                )
                await self._call("save_performer_state", self._saver(state))
                await self._update(dep_id, DeploymentStatus.RUNNING)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:4096]
                self._emit("deploy_failed", avs, dep_id)
                try:
                    await self._update(dep_id, DeploymentStatus.FAILED, error)
                except Exception:
                    _log.exception("deployment %s: could not record the failure", dep_id)
                raise
            self.performers[avs] = state
            states.append(state)
            self._emit("deployed", avs, dep_id)
        return states

    # -- helpers ---------------------------------------------------------------------------

    def _saver(self, record: InflightTask | PerformerState | Deployment) -> Callable[[], Awaitable[None]]:
        if isinstance(record, InflightTask):
            return lambda: self.store.save_inflight_task(record)
        if isinstance(record, PerformerState):
            return lambda: self.store.save_performer_state(record)
        return lambda: self.store.save_deployment(record)

    async def _update(self, deployment_id: str, status: DeploymentStatus, error: str = "") -> None:
        await self._call(
            f"update_deployment_status({status.value})",
            lambda: self.store.update_deployment_status(deployment_id, status, error=error),
        )

    async def _inflight(self, task_id: str) -> InflightTask | None:
        try:
            return await self._call("get_inflight_task", lambda: self.store.get_inflight_task(task_id))
        except NotFoundError:
            return None

    async def _drop_inflight(self, task_id: str) -> None:
        try:
            await self._call("delete_inflight_task", lambda: self.store.delete_inflight_task(task_id))
        except NotFoundError:
            pass  # a repeated delete whose first attempt was applied
        except StoreUnavailableError:
            _log.warning("task %s: inflight record not deleted; recover() will list it", task_id)

    async def _mark_interrupted(self, record: InflightTask) -> None:
        interrupted = msgspec.structs.replace(record, status=INFLIGHT_INTERRUPTED)
        try:
            await self._call("save_inflight_task", self._saver(interrupted))
        except Exception as exc:  # best effort: recover() at the next start does the same
            _log.warning("task %s: could not mark it interrupted: %s", record.task_id, exc)

    def _remember(self, task_id: str, result: bytes) -> None:
        if self._cache_size == 0:
            return
        self._results[task_id] = result
        self._results.move_to_end(task_id)
        while len(self._results) > self._cache_size:
            self._results.popitem(last=False)

    def _deduplicated(self, task_id: str) -> None:
        self.deduplicated += 1
        self._emit("deduplicated", task_id)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await repeat_on_unavailable(call, what=what, policy=self.retry, logger=_log)

    def _emit(self, kind: str, subject: str = "", detail: str = "") -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(
                RuntimeEvent(
                    component=self.component,
                    kind=kind,
                    owner=self.operator_address,
                    subject=subject,
                    detail=detail,
                )
            )
        except Exception:
            _log.exception("on_event callback failed")
