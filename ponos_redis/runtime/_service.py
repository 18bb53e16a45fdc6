"""What the runtime's long-running components share: a stop request that any
signal handler may make, ``run()``/``stop()`` bookkeeping, interruptible
sleeps, the event callback and the classification of fatal store errors."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import NamespaceLostError, SchemaVersionError, StoreClosedError

__all__ = ["FATAL_ERRORS", "EventCallback", "RuntimeEvent", "Service", "stop_on_signals"]

# Errors after which a component must stop as a whole: the namespace is gone
# (its leases and tokens mean nothing any more), it was migrated to a schema this
# version does not write, or the store was closed under it.
FATAL_ERRORS: tuple[type[BaseException], ...] = (NamespaceLostError, SchemaVersionError, StoreClosedError)


@dataclass(frozen=True, kw_only=True)
class RuntimeEvent:
    """Something a runtime component did, for progress displays and logs.

    Attributes:
        component: ``"worker"``, ``"reaper"``, ``"poller"`` or ``"executor"``.
        kind: what happened, e.g. ``"claimed"``, ``"completed"``, ``"stale"``,
            ``"released"``, ``"reaped"``, ``"reorg"``, ``"lease_lost"``, ``"deduplicated"``.
        owner: the component's owner (replica) name, or the operator address.
        subject: the task id, chain id ... the event is about ("" when none).
        detail: free text (a reason, a count).
    """

    component: str
    kind: str
    owner: str
    subject: str = ""
    detail: str = ""


EventCallback = Callable[[RuntimeEvent], None]


class Service:
    """Base of the runtime's loops: stop requests, run bookkeeping, events."""

    component = "service"

    def __init__(self, owner: str, on_event: EventCallback | None, logger: logging.Logger) -> None:
        self.owner = owner
        self._on_event = on_event
        self._log = logger
        self._stop_requested = asyncio.Event()
        self._wake = asyncio.Event()
        self._running = False
        self._finished = asyncio.Event()
        self._finished.set()
        self._rng = random.Random()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        """Ask ``run()`` to stop; returns at once (safe to call from a signal handler)."""
        self._stop_requested.set()
        self._wake.set()

    async def stop(self) -> None:
        """Request a stop and wait until ``run()`` has finished its shutdown.

        A stopped service stays stopped (a later ``run()`` returns at once): make a new one.
        """
        self.request_stop()
        await self._finished.wait()

    def install_signal_handlers(
        self, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Make SIGTERM and SIGINT (or ``signals``) request a graceful stop of this service.

        An event loop has one handler per signal, so this replaces any other
        (another service's included): to stop several services on one signal,
        use :func:`stop_on_signals` with all of them. Call it from the running
        event loop (Unix only).
        """
        stop_on_signals(self, signals=signals)

    def _begin_run(self) -> None:
        if self._running:
            raise RuntimeError(f"{type(self).__name__}.run() is already running")
        self._running = True
        self._finished.clear()

    def _end_run(self) -> None:
        self._running = False
        self._finished.set()

    def _emit(self, kind: str, subject: str = "", detail: str = "") -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(
                RuntimeEvent(
                    component=self.component, kind=kind, owner=self.owner, subject=subject, detail=detail
                )
            )
        except Exception:  # a display callback must never stop the service
            self._log.exception("on_event callback failed")

    def _jittered(self, seconds: float, spread: float = 0.2) -> float:
        return seconds * (1 - spread + 2 * spread * self._rng.random())

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a stop request (or ``_wake``) ends it early."""
        self._wake.clear()
        if self.stopping or seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass


def stop_on_signals(
    *services: Service, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Make each of ``signals`` request a graceful stop of every one of ``services``.

    Installs one handler per signal on the running event loop (replacing any
    previous one); each ``run()`` then shuts down as after ``stop()``. Unix only.
    """
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for service in services:
            service.request_stop()

    for sig in signals:
        loop.add_signal_handler(sig, stop_all)
