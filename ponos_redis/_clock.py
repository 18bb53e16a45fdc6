"""Clocks. The Redis backend judges leases and deadlines by the server's TIME;
the fake (and tests of the Redis backend) take an injectable clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "ManualClock", "system_clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to; for tests.

    >>> clock = ManualClock()
    >>> clock.advance(30)
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        """Set the clock to ``when`` (timezone-aware), forward or back."""
        if when.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware datetime")
        self._now = when.astimezone(UTC)
