"""Reaper: return expired leases to pending, once per interval across all replicas.

Every replica runs one; a single-runner guard (``try_runner_lease("reaper", ...)``,
a lease with its own ttl) makes sure that N replicas do not do the work N times.
``reap_expired_leases`` is itself safe to run concurrently (one atomic
compare-and-move per task, judged by the server's clock), so the guard saves
work, it is not needed for correctness.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import PonosStorageError, StoreUnavailableError
from ..interfaces import AggregatorStore
from ._retry import RetryPolicy, repeat_on_unavailable
from ._service import FATAL_ERRORS, EventCallback, Service

__all__ = ["REAPER_GUARD", "Reaper"]

REAPER_GUARD = "reaper"

_log = logging.getLogger("ponos_redis.runtime.reaper")


class Reaper(Service):
    """Calls ``reap_expired_leases()`` every ``interval_s`` when it holds the guard.

    **Takeover bound.** Let ``L`` be the workers' ``lease_s``, ``I`` this
    ``interval_s`` and ``G`` the guard's ttl (``G <= I``, enforced). A replica
    killed at time ``t0`` leaves leases that expire by ``t0 + L`` (a lease is
    never extended past the last claim or renewal plus ``L``). While at least
    one other replica's reaper runs and reaches the store, each of those tasks
    is back to pending (or failed, after ``max_attempts``) by::

        t0 + max(L, G) + I

    The ``G`` term matters only if the killed replica held the guard, which
    then lapses by ``t0 + G``; with the usual ``G <= L`` the bound is
    ``t0 + L + I``, and in every case it is at most ``t0 + L + G + I <=
    t0 + L + 2*I``. (Why: a live guard holder ticks again within ``I`` and,
    ``G <= I``, finds the guard lapsed or its own, so some replica reaps within
    ``I`` of any instant once the dead holder's guard has lapsed.) Add the
    latency of one ``reap_expired_leases`` call and the drift between the
    replicas' monotonic clocks and the store's clock (leases are judged by the
    Redis server's time, the interval by each replica's event loop); while the
    store is unreachable no reaping happens at all.

    Args:
        store: the aggregator store.
        owner: this replica's name (an id), recorded as the guard's holder.
        interval_s: time between attempts, start to start.
        guard_ttl_s: the guard's ttl; default ``interval_s``; must be ``<= interval_s``.
        retry: repetitions after ``StoreUnavailableError`` within one attempt;
            default ``RetryPolicy(attempts=3)`` (the next interval is the real retry).
        on_event: called with a :class:`RuntimeEvent` after each reap (``"reaped"``).
        guard_name: the guard's name; replicas that should share the work use the same.

    Attributes:
        runs: reaps this replica ran (it held the guard).
        reaped: leases those runs returned (or failed).
        skipped: intervals another replica held the guard.
        store_retries, errors: repeated store calls; attempts that ended in an error.
    """

    component = "reaper"

    def __init__(
        self,
        store: AggregatorStore,
        owner: str,
        *,
        interval_s: float = 5.0,
        guard_ttl_s: float | None = None,
        retry: RetryPolicy | None = None,
        on_event: EventCallback | None = None,
        guard_name: str = REAPER_GUARD,
    ) -> None:
        super().__init__(owner, on_event, _log)
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        guard = interval_s if guard_ttl_s is None else guard_ttl_s
        if not 0 < guard <= interval_s:
            raise ValueError("guard_ttl_s must be positive and at most interval_s")
        self.store = store
        self.interval_s = float(interval_s)
        self.guard_ttl_s = float(guard)
        self.guard_name = guard_name
        self.retry = retry or RetryPolicy(attempts=3)
        self.runs = 0
        self.reaped = 0
        self.skipped = 0
        self.store_retries = 0
        self.errors = 0

    async def run_once(self) -> bool:
        """One attempt: take (or extend) the guard and, if held, reap.

        Returns:
            True if this replica reaped; False if another one holds the guard.

        Raises:
            StoreUnavailableError: the store stayed unreachable (outcome unknown).
            NamespaceLostError: the store lost the namespace.
        """
        held = await repeat_on_unavailable(
            lambda: self.store.try_runner_lease(self.guard_name, self.owner, ttl_s=self.guard_ttl_s),
            what="try_runner_lease",
            policy=self.retry,
            on_repeat=self._count_retry,
            logger=_log,
        )
        if not held:
            self.skipped += 1
            return False
        reaped = await repeat_on_unavailable(
            self.store.reap_expired_leases,
            what="reap_expired_leases",
            policy=self.retry,
            on_repeat=self._count_retry,
            logger=_log,
        )
        self.runs += 1
        self.reaped += reaped
        if reaped:
            _log.info(
                "reaper %s: %d expired lease(s) returned",
                self.owner,
                reaped,
                extra={"event": "lease_reaped", "owner": self.owner, "count": reaped},
            )
        self._emit("reaped", detail=str(reaped))
        return True

    async def run(self) -> None:
        """Attempt every ``interval_s`` until ``stop()``, a signal or cancellation.

        Errors of one attempt are logged and the next interval tries again,
        except the fatal ones.

        Raises:
            NamespaceLostError: the store lost the namespace.
            StoreClosedError: the store was closed under the reaper.
        """
        self._begin_run()
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping:
                started = loop.time()
                try:
                    await self.run_once()
                except FATAL_ERRORS:
                    raise
                except StoreUnavailableError:
                    self.errors += 1  # logged by the repeater; the next interval retries
                except PonosStorageError as exc:
                    self.errors += 1
                    _log.error("reaper %s: %s", self.owner, exc)
                await self._sleep_or_wake(started + self.interval_s - loop.time())
        finally:
            self._end_run()

    def _count_retry(self, _exc: StoreUnavailableError) -> None:
        self.store_retries += 1
