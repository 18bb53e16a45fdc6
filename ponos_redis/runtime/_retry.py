"""Repeating a store call after ``StoreUnavailableError``.

Why repeating is right: a store gives up with ``StoreUnavailableError`` only
after its own retry budget (``redis.retry``) is spent, and then the outcome of
the call is unknown: it may have been applied. Every store operation is safe
to repeat (a repeated ``complete_task`` answers "already done", a repeated
``set_last_processed_block`` is a no-op, a repeated ``release_task`` is
recognised by the store), so the runtime repeats it, with a short, jittered,
bounded backoff, a bounded number of times, and logs each repetition. When
the repetitions are spent too, the error goes to the caller, who decides what
a still-unknown outcome means for it (the worker leaves the task to its lease
and the reaper; the poller tries again at its next poll).

Nothing else is repeated here: ``StaleLeaseError`` (stop before any further
side effect), ``NamespaceLostError`` (stop the component) and every other
error go straight to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import StoreUnavailableError

__all__ = ["RetryPolicy", "repeat_on_unavailable"]

T = TypeVar("T")

_log = logging.getLogger("ponos_redis.runtime")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often, and how far apart, a store call is repeated after ``StoreUnavailableError``.

    Attempt ``n`` (the first repetition is 1) waits a random time between half
    and all of ``min(max_backoff_s, base_backoff_s * 2 ** (n - 1))``.

    Attributes:
        attempts: calls in all, the first one included (at least 1).
        base_backoff_s: the wait before the first repetition (upper bound).
        max_backoff_s: no wait is longer than this.
    """

    attempts: int = 8
    base_backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("RetryPolicy backoffs must not be negative")

    def backoff(self, repetition: int, rng: random.Random | None = None) -> float:
        """The wait before repetition number ``repetition`` (1 for the first)."""
        ceiling = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** max(0, repetition - 1))
        draw = rng.random() if rng is not None else random.random()
        return ceiling * (0.5 + 0.5 * draw)


async def repeat_on_unavailable(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy | None = None,
    on_repeat: Callable[[StoreUnavailableError], None] | None = None,
    logger: logging.Logger | None = None,
) -> T:
    """Await ``call()``; after ``StoreUnavailableError`` wait and call it again.

    Args:
        call: makes a fresh awaitable for each attempt (``lambda: store.x(...)``).
        what: names the call in the log.
        policy: attempts and backoff; default ``RetryPolicy()``.
        on_repeat: called with the error before each repetition (counters).
        logger: where repetitions are logged (warning); default ``ponos_redis.runtime``.

    Returns:
        what the first successful attempt returned.

    Raises:
        StoreUnavailableError: the last attempt's, once ``policy.attempts`` are spent;
            the outcome of the call is still unknown. Any other exception of
            ``call()`` is raised at once.
    """
    policy = policy or RetryPolicy()
    log = logger or _log
    repetition = 0
    while True:
        try:
            return await call()
        except StoreUnavailableError as exc:
            repetition += 1
            if repetition >= policy.attempts:
                log.error(
                    "%s: store unavailable after %d attempts; giving up: %s",
                    what,
                    repetition,
                    exc,
                    extra={"event": "store_unavailable", "operation": what, "attempts": repetition},
                )
                raise
            delay = policy.backoff(repetition)
            log.warning(
                "%s: store unavailable (outcome unknown), repeating in %.2fs (%d/%d): %s",
                what,
                delay,
                repetition,
                policy.attempts - 1,
                exc,
            )
            if on_repeat is not None:
                on_repeat(exc)
            await asyncio.sleep(delay)
