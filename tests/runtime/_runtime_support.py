"""Helpers of the runtime tests: a virtual-time event loop tied to a ManualClock,
and a store wrapper that injects faults.

Virtual time: the loop's ``time()`` is the ManualClock, and whenever the loop
would sleep until its next timer it moves the clock there at once instead.
The memory stores read the same clock, so leases, renewals, poll intervals and
reaper ticks all happen on one timeline, deterministically and without any
wall-clock waiting; a test that "runs for 60 seconds" takes milliseconds.
Real I/O (signals through the loop's self-pipe) still wakes the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import selectors
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ponos_redis import ManualClock, StoreUnavailableError

T = TypeVar("T")

# A bound on the virtual time of every test body: a deadlock fails fast instead of hanging.
VIRTUAL_TIMEOUT_S = 3600.0


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self, clock: ManualClock) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer at all: only real I/O can wake the loop
            return self._real.select(None)
        # Jump to the next timer, rounded up to the clock's microsecond.
        self._clock.advance(math.ceil(timeout * 1_000_000 + 1) / 1_000_000)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is a ManualClock that jumps to the next timer."""

    def __init__(self, clock: ManualClock) -> None:
        self._vclock = clock
        self._origin = clock()
        super().__init__(_VirtualSelector(clock))

    def time(self) -> float:
        return (self._vclock() - self._origin).total_seconds()


def run_virtual(main: Callable[[ManualClock], Coroutine[Any, Any, T]], clock: ManualClock | None = None) -> T:
    """Run ``main(clock)`` on a virtual-time loop driven by ``clock``."""
    clock = clock or ManualClock()

    async def bounded() -> T:
        async with asyncio.timeout(VIRTUAL_TIMEOUT_S):
            return await main(clock)

    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(clock)) as runner:
        return runner.run(bounded())


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 120.0, step_s: float = 0.05
) -> None:
    """Poll ``predicate`` every ``step_s`` (virtual) seconds until it is true."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(step_s)


class FlakyStore:
    """Wraps a store; selected calls raise StoreUnavailableError, or are slowed down.

    ``fail_before[op] = n``: the next n calls of ``op`` raise without being applied.
    ``fail_after[op] = n``: the next n calls of ``op`` are applied, then raise (a lost reply).
    ``delay[op] = s``: each call of ``op`` first sleeps ``s`` seconds.
    ``raise_on[op] = exc``: the next call of ``op`` raises ``exc`` without being applied.
    ``calls[op]``: how many times ``op`` was called.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.namespace = inner.namespace
        self.fail_before: Counter[str] = Counter()
        self.fail_after: Counter[str] = Counter()
        self.delay: dict[str, float] = {}
        self.raise_on: dict[str, BaseException] = {}
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or not inspect.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name in self.delay:
                await asyncio.sleep(self.delay[name])
            if name in self.raise_on:
                raise self.raise_on.pop(name)
            if self.fail_before[name] > 0:
                self.fail_before[name] -= 1
                raise StoreUnavailableError(f"injected: {name} not applied")
            result = await target(*args, **kwargs)
            if self.fail_after[name] > 0:
                self.fail_after[name] -= 1
                raise StoreUnavailableError(f"injected: {name} applied, reply lost")
            return result

        return call
