"""Replicas and executors run in-process: the stand-in for child processes on the fake.

When there is no ``redis-server`` the stores are the in-process fake, which
only processes of one interpreter can share; the replicas and executors then
run as asyncio tasks of the coordinator, with the same code as the child
processes and the same loopback RPC and chain server. A "kill" severs the
node's stores first (:class:`~._guard.StoreGuard`), so nothing it does while
being cancelled reaches the store, as nothing of a SIGKILLed process does;
then cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ._child import Emit

__all__ = ["InProcessNode", "Node", "NodeRunner"]

log = logging.getLogger("ponos_redis.simulate")

_STOP_TIMEOUT = 10.0


class Node(Protocol):
    """A replica or an executor, as its process's main (or an in-process task) runs it."""

    async def run(self, stop: asyncio.Event) -> int: ...
    def crash(self) -> None: ...


NodeFactory = Callable[[dict[str, Any], Emit], Node]


class NodeRunner(Protocol):
    """What the coordinator does with a replica or executor, in a process or in-process."""

    name: str
    incarnation: int

    @property
    def pid(self) -> int | None: ...
    @property
    def running(self) -> bool: ...
    async def start(self) -> None: ...
    async def kill(self) -> None: ...
    async def stop(self) -> None: ...
    def kill_now(self) -> None: ...
    def died(self) -> str | None: ...
    def dump_tasks(self) -> None: ...
    def log_tail(self, lines: int = 15) -> str: ...


class InProcessNode:
    """A node run as an asyncio task of the coordinator; restartable like a :class:`~._procs.Child`."""

    def __init__(
        self,
        name: str,
        factory: NodeFactory,
        spec: dict[str, Any],
        on_message: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.name = name
        self.incarnation = 0
        self._factory = factory
        self._spec = spec
        self._on_message = on_message
        self._node: Node | None = None
        self._task: asyncio.Task[int] | None = None
        self._stop = asyncio.Event()
        self._asked_to_end = False

    @property
    def pid(self) -> int | None:
        return None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.incarnation += 1
        self._asked_to_end = False
        spec = {**self._spec, "name": self.name, "incarnation": self.incarnation}

        def emit(message: dict[str, Any]) -> None:
            self._on_message(self.name, message)

        self._stop = asyncio.Event()
        node = self._factory(spec, emit)
        self._node = node
        self._task = asyncio.create_task(node.run(self._stop), name=f"node {self.name}")

    async def kill(self) -> None:
        self._asked_to_end = True
        node, task = self._node, self._task
        if node is None or task is None or task.done():
            return
        node.crash()
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, _STOP_TIMEOUT)

    async def stop(self) -> None:
        self._asked_to_end = True
        task = self._task
        if task is None or task.done():
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), _STOP_TIMEOUT)
        except TimeoutError:
            await self.kill()
        except Exception:
            log.exception("%s stopped with an error", self.name)

    def dump_tasks(self) -> None:
        pass  # in-process: the coordinator's own log has what there is

    def died(self) -> str | None:
        task = self._task
        if task is None or not task.done() or self._asked_to_end:
            return None
        if task.cancelled():
            return "cancelled"
        exc = task.exception()
        return f"{type(exc).__name__}: {exc}" if exc is not None else f"returned {task.result()}"

    def kill_now(self) -> None:
        self._asked_to_end = True
        if self._node is not None:
            self._node.crash()
        if self._task is not None:
            self._task.cancel()

    def log_tail(self, lines: int = 15) -> str:
        return ""
