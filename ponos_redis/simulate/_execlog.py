"""The executors' execution log: what the verdict reads to judge "executed at most once".

Each executor records an execution *before* its side effect counts as done
(before it answers the aggregator): one entry per execution, ``[task id,
execution id]``, the execution id fresh for each run of the side effect. A
write retried after a lost reply may append the same entry twice; the verdict
counts distinct execution ids per task, so only a real second execution shows.

On Redis the log is one list per executor, outside the store's key space
(``ponos-sim:{<executor namespace>}:executions``: the executor namespace's hash
tag keeps it on that namespace's shard). It is written through the store's own
retry policy (:func:`ponos_redis._connection.retrying`), with the same WAIT as
the store's writes under ``durability: replicated``, so it survives what the
executor's de-duplication markers survive. On the in-process fake it is a list
in memory.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol

from .._connection import connect, retrying
from ..config import RedisSettings

__all__ = ["ExecutionLog", "MemoryExecutionLog", "RedisExecutionLog", "execution_log_key"]

Entry = tuple[str, str]  # (task id, execution id)


def execution_log_key(executor_namespace: str) -> str:
    return f"ponos-sim:{{{executor_namespace}}}:executions"


class ExecutionLog(Protocol):
    async def record(self, executor_namespace: str, task_id: str, execution_id: str) -> None: ...
    async def read(self, executor_namespace: str) -> list[Entry]: ...
    async def close(self) -> None: ...


def _decode(raw: bytes | str) -> Entry | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) for x in value):
        return value[0], value[1]
    return None


class RedisExecutionLog:
    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._client: Any = connect(settings)

    async def record(self, executor_namespace: str, task_id: str, execution_id: str) -> None:
        key = execution_log_key(executor_namespace)
        entry = json.dumps([task_id, execution_id])

        async def push() -> None:
            if self._settings.durability == "replicated":
                pipe = self._client.pipeline(transaction=False)
                pipe.rpush(key, entry)
                pipe.wait(self._settings.replicas, self._settings.wait_timeout_ms)
                await pipe.execute()
            else:
                await self._client.rpush(key, entry)

        await retrying(self._settings.retry, push, "execution log")

    async def read(self, executor_namespace: str) -> list[Entry]:
        key = execution_log_key(executor_namespace)
        raw = await retrying(
            self._settings.retry, functools.partial(self._client.lrange, key, 0, -1), "execution log"
        )
        return [entry for item in raw if (entry := _decode(item)) is not None]

    async def append_raw(self, executor_namespace: str, value: str) -> None:
        """Append an entry as it is (for the tests that break an invariant on purpose)."""
        await self._client.rpush(execution_log_key(executor_namespace), value)

    async def close(self) -> None:
        await self._client.aclose()


class MemoryExecutionLog:
    """The log of the in-process fake: shared by every executor task of one process."""

    def __init__(self) -> None:
        self._lists: dict[str, list[str]] = {}

    async def record(self, executor_namespace: str, task_id: str, execution_id: str) -> None:
        self._lists.setdefault(executor_namespace, []).append(json.dumps([task_id, execution_id]))

    async def read(self, executor_namespace: str) -> list[Entry]:
        raw = self._lists.get(executor_namespace, [])
        return [entry for item in raw if (entry := _decode(item)) is not None]

    async def append_raw(self, executor_namespace: str, value: str) -> None:
        self._lists.setdefault(executor_namespace, []).append(value)

    async def close(self) -> None:
        pass
