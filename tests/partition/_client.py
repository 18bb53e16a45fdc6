"""An aggregator replica for the partition tests, run inside a node's namespace.

``python _client.py CONFIG_JSON LOG NAME MODE SECONDS``; CONFIG_JSON is the
store's config (``StorageConfig.from_dict``), passwords come from the
environment as the config names them.

Modes:

- ``work``: for at most SECONDS (or until the file ``LOG.stop`` appears)
  save a new task, claim one task and complete it, over and over; every call
  is one JSON line in LOG: ``op``, ``id``, ``t0``/``t1`` (wall clock at the
  call and at its answer), ``ok``, ``error`` (the error's class), ``token``
  for claims and completions. A call the store could not make is logged and
  the loop goes on: what was acknowledged is what the log says was.
- ``late``: claim the task ``late-1`` with a 2 s lease, write ``claimed``,
  wait for ``LOG.go``, then complete it with the claim's token and log the
  answer (the test partitions the node in between).
- ``takeover``: reap expired leases and claim until a task comes, complete
  it, log both and stop.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from ponos_redis import PonosStorageError, StorageConfig
from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.testing import make_task

LATE_LEASE_S = 2.0


def flagged(path: Path) -> bool:
    """Whether the test has created the file ``path`` (a signal between the processes)."""
    return path.exists()


class Log:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed at exit

    def write(self, **record: Any) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()


async def call(log: Log, op: str, task_id: str, coro: Any) -> Any:
    t0 = time.time()
    try:
        result = await coro
    except PonosStorageError as exc:
        log.write(
            op=op,
            id=task_id,
            t0=t0,
            t1=time.time(),
            ok=False,
            error=type(exc).__name__,
            message=str(exc)[:300],
        )
        return None
    token = getattr(result, "token", None)
    log.write(op=op, id=task_id, t0=t0, t1=time.time(), ok=True, error=None, token=token)
    return result


async def work(store: RedisAggregatorStore, log: Log, name: str, seconds: float, stop: Path) -> None:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline and not flagged(stop):
        n += 1
        task_id = f"{name}-{n}"
        await call(log, "save", task_id, store.save_task(make_task(task_id)))
        t0 = time.time()
        try:
            claimed = await store.claim_tasks(name, limit=1, lease_s=30.0)
        except PonosStorageError as exc:
            log.write(
                op="claim",
                id=None,
                t0=t0,
                t1=time.time(),
                ok=False,
                error=type(exc).__name__,
                message=str(exc)[:300],
            )
            claimed = []
        for item in claimed:
            log.write(
                op="claim", id=item.task.task_id, t0=t0, t1=time.time(), ok=True, error=None, token=item.token
            )
            t0 = time.time()
            try:
                await store.complete_task(item.task.task_id, item.token)
            except PonosStorageError as exc:
                log.write(
                    op="complete",
                    id=item.task.task_id,
                    t0=t0,
                    t1=time.time(),
                    ok=False,
                    error=type(exc).__name__,
                    message=str(exc)[:300],
                )
            else:
                log.write(
                    op="complete",
                    id=item.task.task_id,
                    t0=t0,
                    t1=time.time(),
                    ok=True,
                    error=None,
                    token=item.token,
                )
        await asyncio.sleep(0.05)


async def late(store: RedisAggregatorStore, log: Log, name: str, seconds: float, go: Path) -> None:
    await store.save_task(make_task("late-1"))
    claimed = await store.claim_tasks(name, limit=1, lease_s=LATE_LEASE_S)
    assert [c.task.task_id for c in claimed] == ["late-1"], claimed
    token = claimed[0].token
    log.write(op="claim", id="late-1", t0=time.time(), t1=time.time(), ok=True, error=None, token=token)
    deadline = time.monotonic() + seconds
    while not flagged(go):
        if time.monotonic() > deadline:
            raise TimeoutError("no go")
        await asyncio.sleep(0.05)
    t0 = time.time()
    try:
        await store.complete_task("late-1", token)
    except PonosStorageError as exc:
        log.write(
            op="complete",
            id="late-1",
            t0=t0,
            t1=time.time(),
            ok=False,
            error=type(exc).__name__,
            message=str(exc)[:300],
            token=token,
        )
    else:
        log.write(op="complete", id="late-1", t0=t0, t1=time.time(), ok=True, error=None, token=token)


async def takeover(store: RedisAggregatorStore, log: Log, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await store.reap_expired_leases()
        claimed = await store.claim_tasks(name, limit=1, lease_s=30.0)
        for item in claimed:
            log.write(
                op="claim",
                id=item.task.task_id,
                t0=time.time(),
                t1=time.time(),
                ok=True,
                error=None,
                token=item.token,
            )
            t0 = time.time()
            await store.complete_task(item.task.task_id, item.token)
            log.write(
                op="complete",
                id=item.task.task_id,
                t0=t0,
                t1=time.time(),
                ok=True,
                error=None,
                token=item.token,
            )
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("nothing to take over")


async def main(config_json: str, log_path: str, name: str, mode: str, seconds: float) -> None:
    config = StorageConfig.from_dict(json.loads(config_json))
    log = Log(Path(log_path))
    store = await RedisAggregatorStore.open(config)
    log.write(op="open", id=None, t0=time.time(), t1=time.time(), ok=True, error=None)
    try:
        if mode == "work":
            await work(store, log, name, seconds, Path(log_path + ".stop"))
        elif mode == "takeover":
            await takeover(store, log, name, seconds)
        else:
            await late(store, log, name, seconds, Path(log_path + ".go"))
    finally:
        await store.close()
    log.write(op="exit", id=None, t0=time.time(), t1=time.time(), ok=True, error=None)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
