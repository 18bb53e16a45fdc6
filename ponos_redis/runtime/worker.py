"""TaskWorker: claim tasks under a lease, run a handler for each, renew while
it runs, and finish each task with its fencing token.

The rules it follows (LESSONS.md #1 and #3):

- A claimed task is the worker's only while its lease lasts. The lease is
  renewed on its own timer (every ``renew_every_s``), independently of the
  handler. When a renewal raises ``StaleLeaseError`` (another replica or the
  reaper has the task now), or the lease runs out locally without a
  successful renewal (the store was unreachable too long), the handler's
  asyncio task is cancelled at once: it must make no further side effect,
  and the task is neither completed nor failed by this worker.
- The local deadline is measured on the event loop's clock from *before*
  the claim (or renewal) call was sent, so it never runs past the store's.
- A handler that returns completes the task; one that raises fails it with
  ``retry=True`` (back to pending while attempts remain). Both carry the
  token, so a worker that lost its lease meanwhile changes nothing.
- Store calls that raise ``StoreUnavailableError`` are repeated (see
  :mod:`ponos_redis.runtime._retry`). If the repetitions are spent the
  outcome stays unknown: the task is counted ``abandoned`` and left to its
  lease; the reaper returns it to pending once the lease expires.
- A ``DurabilityError`` (the write was applied but its replication not
  confirmed) of a renewal counts as no renewal; of a claim, as a claim whose
  tasks come back through the reaper.
- ``NamespaceLostError`` (and ``StoreClosedError``) stop the whole worker:
  ``run()`` cancels the handlers, touches the store no more and raises it.
- Shutdown (``stop()``, a signal, or cancelling ``run()``) stops claiming,
  cancels running handlers and releases every task they held, so that other
  replicas can claim them at once instead of waiting for the leases to expire.

Handlers must be cancellable: a handler that swallows ``CancelledError`` keeps
its slot (and delays shutdown) until it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import DurabilityError, PonosStorageError, StaleLeaseError, StoreUnavailableError
from ..interfaces import AggregatorStore
from ..models import ClaimedTask
from ._retry import RetryPolicy, repeat_on_unavailable
from ._service import FATAL_ERRORS, EventCallback, Service

__all__ = ["TaskHandler", "TaskWorker"]

TaskHandler = Callable[[ClaimedTask], Awaitable[None]]

T = TypeVar("T")

_log = logging.getLogger("ponos_redis.runtime.worker")

# Longest fail_task reason the store accepts (MAX_TEXT_CHARS).
_MAX_REASON = 4096

# How often a cancellation is repeated until the task ends (see _cancel_until_done).
_RECANCEL_S = 0.05


async def _cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, cancelling again while it runs.

    One ``cancel()`` is not always enough: on Python 3.11, ``asyncio.wait_for``
    (which redis-py wraps around every command) drops a cancellation that arrives
    in the same loop turn as its inner call completing (fixed in Python 3.12), so
    the task would run on as if never cancelled.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=_RECANCEL_S)


@dataclass(eq=False)
class _Slot:
    claimed: ClaimedTask
    deadline: float  # loop time after which the lease may be gone
    handler: asyncio.Task[None] | None = None
    runner: asyncio.Task[None] | None = None
    lost: str | None = None  # why the lease was given up, when it was
    finished: bool = False  # the handler ended: the renewer must stop
    renewals: int = 0


class TaskWorker(Service):
    """Claims tasks from an aggregator store and runs ``handler`` on each.

    Args:
        store: the aggregator store (shared with the other replicas).
        owner: this replica's name, recorded as the lease owner (1-256 characters).
        handler: ``async def handler(claimed: ClaimedTask) -> None``; does the
            task's work. Return: the task is completed. Raise: it is failed with
            ``retry=True``. It is cancelled when the lease is lost or at shutdown.
        concurrency: at most this many handlers run at once.
        lease_s: the lease asked for at claim and at each renewal.
        renew_every_s: time between renewals; default ``lease_s / 3``; must be
            below ``lease_s``.
        poll_interval_s: sleep between claims that found nothing (jittered by
            ±20%); the worker never busy-loops.
        claim_limit: most tasks asked for in one claim; default ``concurrency``.
        retry: repetitions after ``StoreUnavailableError``; default ``RetryPolicy()``.
        on_event: called with a :class:`RuntimeEvent` for each claim, completion,
            failure, stale lease, release and abandoned task. Must not block.

    Attributes (counters, for progress displays; the truth is in the store):
        claimed, completed, failed, stale, released, abandoned, renewals,
        store_retries, errors: numbers of tasks claimed, completed, failed
        (handler raised), given up because the lease was lost (``stale``),
        released at shutdown, left with an unknown outcome after the store
        stayed unreachable (``abandoned``), of successful lease renewals, of
        repeated store calls, and of unexpected store errors.
        peak_running: the most handlers that ran at once.
    """

    component = "worker"

    def __init__(
        self,
        store: AggregatorStore,
        owner: str,
        handler: TaskHandler,
        *,
        concurrency: int = 10,
        lease_s: float = 30.0,
        renew_every_s: float | None = None,
        poll_interval_s: float = 0.5,
        claim_limit: int | None = None,
        retry: RetryPolicy | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        super().__init__(owner, on_event, _log)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        renew = lease_s / 3 if renew_every_s is None else renew_every_s
        if not 0 < renew < lease_s:
            raise ValueError("renew_every_s must be positive and below lease_s")
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        limit = concurrency if claim_limit is None else claim_limit
        if limit < 1:
            raise ValueError("claim_limit must be at least 1")
        self.store = store
        self.handler = handler
        self.concurrency = concurrency
        self.lease_s = float(lease_s)
        self.renew_every_s = float(renew)
        self.poll_interval_s = float(poll_interval_s)
        self.claim_limit = limit
        self.retry = retry or RetryPolicy()
        self._slots: set[_Slot] = set()
        self._fatal: BaseException | None = None
        self.claimed = 0
        self.completed = 0
        self.failed = 0
        self.stale = 0
        self.released = 0
        self.abandoned = 0
        self.renewals = 0
        self.store_retries = 0
        self.errors = 0
        self.peak_running = 0

    # -- public --------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Tasks held right now (handlers running or being finished)."""
        return len(self._slots)

    @property
    def held(self) -> list[ClaimedTask]:
        """The tasks this worker holds right now."""
        return [slot.claimed for slot in self._slots]

    async def run(self) -> None:
        """Claim and process tasks until ``stop()``, a signal, or cancellation.

        On the way out it cancels running handlers and releases their tasks.

        Raises:
            NamespaceLostError: the store lost the namespace (nothing more was written).
            StoreClosedError: the store was closed under the worker.
            RuntimeError: ``run()`` is already running.
        """
        self._begin_run()
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping:
                free = self.concurrency - len(self._slots)
                if free <= 0:
                    await self._sleep_or_wake(self.poll_interval_s)  # a finishing slot wakes it
                    continue
                sent = loop.time()
                try:
                    batch = await self._store_call("claim_tasks", self._claimer(min(free, self.claim_limit)))
                except (StoreUnavailableError, DurabilityError) as exc:
                    # A claim that was applied after all (or not replicated) comes
                    # back to pending through the reaper once its lease expires.
                    if isinstance(exc, DurabilityError):
                        self.errors += 1
                        _log.error(
                            "claim_tasks: %s",
                            exc,
                            extra={"event": "durability_shortfall", "operation": "claim_tasks"},
                        )
                    await self._sleep_or_wake(self._jittered(self.poll_interval_s))
                    continue
                for claimed in batch:
                    self._start(claimed, sent + self.lease_s)
                if not batch:
                    await self._sleep_or_wake(self._jittered(self.poll_interval_s))
        except FATAL_ERRORS as exc:
            self._set_fatal(exc)
        finally:
            await self._shutdown()
            self._end_run()
        if self._fatal is not None:
            raise self._fatal

    # -- slots -----------------------------------------------------------------------

    def _start(self, claimed: ClaimedTask, deadline: float) -> None:
        slot = _Slot(claimed=claimed, deadline=deadline)
        self._slots.add(slot)
        self.claimed += 1
        self.peak_running = max(self.peak_running, len(self._slots))
        task_id = claimed.task.task_id
        self._emit("claimed", task_id, f"token {claimed.token}, attempt {claimed.attempt}")
        slot.handler = asyncio.create_task(self._call_handler(claimed), name=f"ponos-handler:{task_id}")
        slot.runner = asyncio.create_task(self._run_slot(slot), name=f"ponos-slot:{task_id}")
        if self.stopping:  # claimed while a stop came in: give it back untouched
            slot.handler.cancel()

    def _claimer(self, limit: int) -> Callable[[], Awaitable[list[ClaimedTask]]]:
        return lambda: self.store.claim_tasks(self.owner, limit=limit, lease_s=self.lease_s)

    async def _call_handler(self, claimed: ClaimedTask) -> None:
        await self.handler(claimed)

    async def _run_slot(self, slot: _Slot) -> None:
        assert slot.handler is not None
        handler = slot.handler
        renewer = asyncio.create_task(self._renew_until_done(slot), name="ponos-renewer")
        try:
            try:
                await asyncio.wait([handler, renewer], return_when=asyncio.FIRST_COMPLETED)
                if not handler.done():
                    # The renewer ended: the lease is lost. No further side effect.
                    await _cancel_until_done(handler)
            finally:
                slot.finished = True
                await _cancel_until_done(renewer)
                if not handler.done():  # this slot itself was cancelled
                    await _cancel_until_done(handler)
            await self._finish(slot, handler)
        finally:
            self._slots.discard(slot)
            self._wake.set()

    async def _finish(self, slot: _Slot, handler: asyncio.Task[None]) -> None:
        task_id, token = slot.claimed.task.task_id, slot.claimed.token
        exc = None if handler.cancelled() else handler.exception()
        if self._fatal is not None:
            return
        if handler.cancelled():
            if slot.lost is not None:
                self.stale += 1
                self._emit("stale", task_id, slot.lost)
                _log.warning(
                    "task %s: lease lost (%s); handler cancelled",
                    task_id,
                    slot.lost,
                    extra={"event": "task_lease_lost", "task_id": task_id, "owner": self.owner},
                )
                return
            # Shutdown (or the handler cancelled itself): give the task back now.
            if await self._transition("release_task", slot, lambda: self.store.release_task(task_id, token)):
                self.released += 1
                self._emit("released", task_id)
            return
        if exc is None:
            if await self._transition(
                "complete_task", slot, lambda: self.store.complete_task(task_id, token)
            ):
                self.completed += 1
                self._emit("completed", task_id)
            return
        reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
        _log.info("task %s: handler raised %s", task_id, reason)
        if await self._transition(
            "fail_task", slot, lambda: self.store.fail_task(task_id, token, reason, retry=True)
        ):
            self.failed += 1
            self._emit("failed", task_id, reason)

    async def _transition(self, what: str, slot: _Slot, call: Callable[[], Awaitable[None]]) -> bool:
        """Run a token-carrying transition; True if the store applied it."""
        task_id = slot.claimed.task.task_id
        try:
            await self._store_call(f"{what}({task_id})", call)
            return True
        except StaleLeaseError as exc:
            self.stale += 1
            self._emit("stale", task_id, str(exc))
            _log.warning(
                "task %s: %s refused, the lease is no longer ours: %s",
                task_id,
                what,
                exc,
                extra={"event": "stale_refused", "operation": what, "task_id": task_id, "owner": self.owner},
            )
        except StoreUnavailableError:
            self.abandoned += 1
            self._emit("abandoned", task_id, what)
            _log.error(
                "task %s: %s outcome unknown; the lease expires and the reaper returns the task",
                task_id,
                what,
                extra={"event": "task_abandoned", "operation": what, "task_id": task_id, "owner": self.owner},
            )
        except FATAL_ERRORS as exc:
            self._set_fatal(exc)
        except PonosStorageError as exc:
            self.errors += 1
            self._emit("error", task_id, f"{what}: {exc}")
            _log.error("task %s: %s failed: %s", task_id, what, exc)
        return False

    async def _renew_until_done(self, slot: _Slot) -> None:
        """Renew the lease every ``renew_every_s``; cancel the handler once it is lost."""
        loop = asyncio.get_running_loop()
        task_id, token = slot.claimed.task.task_id, slot.claimed.token
        next_at = loop.time() + self.renew_every_s
        repetition = 0
        while True:
            await asyncio.sleep(max(0.0, min(next_at, slot.deadline) - loop.time()))
            if slot.finished:  # the handler ended while this slept
                return
            sent = loop.time()
            remaining = slot.deadline - sent
            if remaining <= 0:
                self._lose(slot, "lease past due without a successful renewal")
                return
            try:
                async with asyncio.timeout(remaining):
                    await self.store.renew_task_lease(task_id, token, lease_s=self.lease_s)
            except TimeoutError:
                self._lose(slot, "lease past due while a renewal was in flight")
                return
            except (StoreUnavailableError, DurabilityError) as exc:
                # Not renewed as far as we know: try again soon, within the deadline.
                repetition += 1
                self.store_retries += 1
                delay = self.retry.backoff(repetition)
                _log.warning(
                    "task %s: renewal: store unavailable, repeating in %.2fs: %s", task_id, delay, exc
                )
                next_at = loop.time() + delay
                continue
            except StaleLeaseError as exc:
                self._lose(slot, f"renewal refused: {exc}")
                return
            except FATAL_ERRORS as exc:
                self._set_fatal(exc)
                self._lose(slot, f"fatal store error: {exc}")
                return
            except PonosStorageError as exc:  # e.g. the task is no longer processing
                self._lose(slot, f"renewal failed: {exc}")
                return
            repetition = 0
            slot.deadline = sent + self.lease_s
            slot.renewals += 1
            self.renewals += 1
            next_at = sent + self.renew_every_s

    def _lose(self, slot: _Slot, reason: str) -> None:
        slot.lost = reason
        if slot.handler is not None:
            slot.handler.cancel()

    def _set_fatal(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            _log.error("worker %s stops: %s", self.owner, exc)
        self.request_stop()

    async def _store_call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await repeat_on_unavailable(
            call, what=what, policy=self.retry, on_repeat=self._count_retry, logger=_log
        )

    def _count_retry(self, _exc: StoreUnavailableError) -> None:
        self.store_retries += 1

    async def _shutdown(self) -> None:
        """Stop claiming, cancel every handler, wait for the slots to release their tasks."""
        self.request_stop()
        handlers = [slot.handler for slot in list(self._slots) if slot.handler is not None]
        if handlers:
            await asyncio.gather(*(_cancel_until_done(h) for h in handlers))
        runners = [slot.runner for slot in list(self._slots) if slot.runner is not None]
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)
