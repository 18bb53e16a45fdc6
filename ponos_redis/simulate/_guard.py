"""A store as one replica (or executor) sees it: its completions reported, and severable.

- A ``complete_task`` the store refuses with ``StaleLeaseError`` is reported
  (``completions refused as stale`` in the report): the refusal is the store's,
  the count is the simulation's, since a refused write leaves no trace in the
  store.
- A ``complete_task`` that returned is reported (``on_completed``): the
  replica writes it to its completion log (:mod:`._execlog`), which the verdict
  checks against the store.
- :meth:`StoreGuard.sever` is the in-process stand-in for SIGKILL (used on the
  in-process fake, where replicas are asyncio tasks): from then on every call
  raises ``StoreClosedError`` before it reaches the store, and a call under way
  has its result dropped, so the replica's shutdown (which would release its
  leases, as a SIGKILLed process never does) writes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from ..errors import StaleLeaseError, StoreClosedError
from ..interfaces import AggregatorStore, ExecutorStore

__all__ = ["StoreGuard"]


class StoreGuard:
    def __init__(
        self,
        store: AggregatorStore | ExecutorStore,
        on_stale_completion: Callable[[str], None] | None = None,
        on_completed: Callable[[str, int], None] | None = None,
    ) -> None:
        self._store = store
        self._on_stale_completion = on_stale_completion
        self._on_completed = on_completed
        self._severed = False
        self.namespace = store.namespace

    @property
    def store(self) -> AggregatorStore:
        """This guard, typed as the aggregator store it stands for."""
        return cast(AggregatorStore, self)

    @property
    def executor_store(self) -> ExecutorStore:
        """This guard, typed as the executor store it stands for."""
        return cast(ExecutorStore, self)

    def sever(self) -> None:
        self._severed = True

    def _check(self) -> None:
        if self._severed:
            raise StoreClosedError("this replica was killed")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name == "events":

            def events(*args: Any, **kwargs: Any) -> Any:
                self._check()
                return attr(*args, **kwargs)

            return events
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            try:
                result = await attr(*args, **kwargs)
            except StaleLeaseError:
                if name == "complete_task" and self._on_stale_completion and not self._severed:
                    self._on_stale_completion(str(args[0]) if args else str(kwargs.get("task_id")))
                raise
            self._check()
            if name == "complete_task" and self._on_completed is not None:
                task_id = args[0] if args else kwargs["task_id"]
                token = args[1] if len(args) > 1 else kwargs["token"]
                self._on_completed(str(task_id), int(token))
            return result

        return call
