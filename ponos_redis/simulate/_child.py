"""What every child process of the simulation shares: its spec, its stop signal, its reports.

A child is started as ``python -m ponos_redis.simulate.<module> <spec JSON>``
(:mod:`._procs`). It stops, cleanly, on SIGTERM or when its stdin closes (the
coordinator stopped or died); a SIGKILL is the crash the fault schedule wants.
It reports to the coordinator with :func:`emit`: one JSON object per line on
stdout, flushed at once, so what a child said before it was killed has
reached the coordinator.

The same coroutine runs as an asyncio task of the coordinator when there is no
``redis-server`` (the in-process fake): then ``emit`` is a plain callback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Emit", "child_main", "stdout_emit"]

log = logging.getLogger("ponos_redis.simulate.child")

Emit = Callable[[dict[str, Any]], None]
ChildMain = Callable[[dict[str, Any], asyncio.Event, Emit], Awaitable[int]]


def stdout_emit(message: dict[str, Any]) -> None:
    """Report one message to the coordinator (a JSON line on stdout, flushed)."""
    message.setdefault("t", time.time())
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _watch_stdin(stop: asyncio.Event) -> None:
    """Set ``stop`` once stdin reaches end of file: the coordinator is gone (or done)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while await reader.read(4096):
            pass
        log.warning("stdin closed: the coordinator is gone; stopping")
    finally:
        transport.close()
        stop.set()


def _dump_tasks() -> None:
    """SIGUSR1: write every asyncio task's stack to the log (the coordinator asks when a run
    does not settle, to show what each process is waiting for)."""
    tasks = asyncio.all_tasks()
    log.warning("SIGUSR1: %d asyncio task(s):", len(tasks))
    for task in tasks:
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def child_main(main: ChildMain) -> None:
    """Run ``main(spec, stop, emit)`` as the process's program and exit with its code."""
    spec: dict[str, Any] = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s {spec.get('name', '?')} %(name)s %(levelname)s %(message)s",
    )
    for name in ("ponos_redis.runtime", "ponos_redis.simulate"):
        logging.getLogger(name).setLevel(logging.INFO)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when children stop

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def terminate() -> None:
            log.info("SIGTERM: stopping")
            stop.set()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        watcher = asyncio.create_task(_watch_stdin(stop))
        try:
            code = await main(spec, stop, stdout_emit)
        except Exception:
            log.exception("stopped by an error")
            code = 1
        finally:
            watcher.cancel()
        log.info("exiting with code %d", code)
        return code

    sys.exit(asyncio.run(run()))
