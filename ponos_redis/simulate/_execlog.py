"""The processes' own logs the verdict reads: the executors' execution log ("executed at
most once") and the replicas' completion log ("no completion accepted twice").

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
in memory. In a soak it is a file per executor in the run's folder
(:class:`FileExecutionLog`), so that it does not grow the Redis whose memory
the soak measures.

The completion log (:class:`CompletionLog`) is each replica's own account of
the completions the store *acknowledged* to it: one line per ``complete_task``
that returned, ``{"ns", "task", "token", "owner"}``, appended to a file in the
run's folder (and flushed) before the worker goes on. A line written survives
a SIGKILL of the replica; a replica killed between the store's reply and the
line leaves no line, which can only hide a completion, never invent one. The
verdict checks these acknowledgements against the store: no task acknowledged
under two tokens, and every acknowledged completion is the store's
``task.completed``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .._connection import connect, retrying
from ..config import RedisSettings

__all__ = [
    "CompletionAck",
    "CompletionLog",
    "ExecutionLog",
    "FileExecutionLog",
    "MemoryExecutionLog",
    "RedisExecutionLog",
    "execution_log_key",
    "read_completion_acks",
]

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


class FileExecutionLog:
    """The log as one JSON-lines file per executor namespace in ``folder`` (a soak's)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def _path(self, executor_namespace: str) -> Path:
        return self._folder / f"executions-{executor_namespace}.jsonl"

    async def record(self, executor_namespace: str, task_id: str, execution_id: str) -> None:
        with self._path(executor_namespace).open("a", encoding="utf-8") as out:
            out.write(json.dumps([task_id, execution_id]) + "\n")

    async def read(self, executor_namespace: str) -> list[Entry]:
        try:
            text = self._path(executor_namespace).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [entry for line in text.splitlines() if (entry := _decode(line)) is not None]

    async def append_raw(self, executor_namespace: str, value: str) -> None:
        with self._path(executor_namespace).open("a", encoding="utf-8") as out:
            out.write(value + "\n")

    async def close(self) -> None:
        pass


@dataclass(frozen=True)
class CompletionAck:
    """A completion the store acknowledged to ``owner``: ``complete_task(task, token)`` returned."""

    namespace: str
    task_id: str
    token: int
    owner: str


class CompletionLog:
    """A replica's completion log: ``path``, appended to (each line flushed) by every incarnation."""

    def __init__(self, path: Path, owner: str) -> None:
        self._owner = owner
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def acknowledged(self, namespace: str, task_id: str, token: int) -> None:
        if self._file is None:
            return
        line = {"ns": namespace, "task": task_id, "token": token, "owner": self._owner}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_completion_acks(folder: Path) -> list[CompletionAck]:
    """Every acknowledgement in the completion logs (``completions-*.jsonl``) of ``folder``;
    a line cut short by a SIGKILL is skipped."""
    acks: list[CompletionAck] = []
    for path in sorted(folder.glob("completions-*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                value = json.loads(line)
                acks.append(
                    CompletionAck(
                        str(value["ns"]), str(value["task"]), int(value["token"]), str(value["owner"])
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
    return acks
