"""A soak's event follower: every event of each namespace, read while the run goes on.

In a soak the event stream is capped at about what the retention window
writes (:mod:`._soak`), so by the end of the run most of what the verdict
reads (every ``task.saved``, ``task.claimed``, ``task.completed``) is gone
from Redis. The coordinator therefore reads each namespace's stream as the
run goes (``events(after=<last id read>)``, every ``poll_s``), and appends
every event to a JSON-lines file in the run's folder, so the coordinator's
memory does not grow with the run; the verdict reads the files at the end.

Nothing it needed may have been trimmed before it was read. ``XADD MAXLEN ~ N``
never leaves fewer than N entries, so if an entry the follower had not read
yet was trimmed, every entry still there is newer than its last read, and the
next read returns at least N events. A read that returns N or more events is
therefore counted as a possible gap (``gaps``), which the verdict reports; one
that returns fewer proves nothing unread was trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from ..errors import PonosStorageError
from ..interfaces import AggregatorStore
from ..models import StoreEvent

__all__ = ["EventFollower"]

_CALL_TIMEOUT_S = 20.0
_ENCODER = msgspec.json.Encoder()


class EventFollower:
    """Appends every event of ``stores`` (by namespace) to ``<folder>/events-<namespace>.jsonl``."""

    def __init__(
        self, stores: Mapping[str, AggregatorStore], folder: Path, *, maxlen: int, poll_s: float = 0.5
    ) -> None:
        self._stores = dict(stores)
        self._folder = folder
        self._maxlen = maxlen
        self._poll_s = poll_s
        self._last: dict[str, str | None] = dict.fromkeys(self._stores)
        self.read: dict[str, int] = dict.fromkeys(self._stores, 0)
        self.gaps: dict[str, int] = dict.fromkeys(self._stores, 0)

    def path(self, namespace: str) -> Path:
        return self._folder / f"events-{namespace}.jsonl"

    async def run(self) -> None:
        """Read until cancelled; a read that fails (Redis restarting) is tried again next time."""
        while True:
            await self.read_all()
            await asyncio.sleep(self._poll_s)

    async def read_all(self) -> bool:
        """Read what is new in every namespace; True when every read succeeded."""
        ok = True
        for namespace in self._stores:
            try:
                async with asyncio.timeout(_CALL_TIMEOUT_S):
                    await self._read(namespace)
            except (PonosStorageError, TimeoutError):
                ok = False
        return ok

    async def _read(self, namespace: str) -> None:
        store = self._stores[namespace]
        n = 0
        with self.path(namespace).open("ab") as out:
            try:
                async for event in store.events(after=self._last[namespace]):
                    out.write(_ENCODER.encode(event) + b"\n")
                    self._last[namespace] = event.id
                    n += 1
            finally:
                self.read[namespace] += n
                if n >= self._maxlen:
                    self.gaps[namespace] += 1

    def events(self, namespace: str) -> list[StoreEvent]:
        """Every event read from ``namespace``, in stream order."""
        decoder = msgspec.json.Decoder(StoreEvent)
        events: list[StoreEvent] = []
        with contextlib.suppress(FileNotFoundError), self.path(namespace).open("rb") as lines:
            events.extend(decoder.decode(line) for line in lines if line.strip())
        return events
