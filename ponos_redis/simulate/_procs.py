"""The simulation's child processes: started, SIGKILLed and restarted by PID.

A child is ``sys.executable -m ponos_redis.simulate.<module> <spec as JSON>``.
It reports on its stdout, one JSON object per line (see :mod:`._child`); its
stderr goes to a log file in the run's folder. It runs in a session of its
own, so a Ctrl-C in the terminal reaches only the coordinator, which then
stops every child it started, by PID. Its stdin is a pipe from the
coordinator that is never written: when the coordinator dies, however it
dies, the pipe closes and the child stops by itself, so no simulation process
outlives its run.

Nothing here signals a process it did not start: a :class:`Child` only ever
signals its own ``asyncio.subprocess.Process`` (which does nothing once that
process was reaped, so a recycled PID is never hit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["Child", "MessageHandler"]

log = logging.getLogger("ponos_redis.simulate")

MessageHandler = Callable[[str, dict[str, Any]], None]

_STOP_TIMEOUT = 5.0
_KILL_TIMEOUT = 5.0


class Child:
    """One child process (a replica or an executor), restartable under the same name.

    ``incarnation`` counts starts (1 for the first), so a restarted child can
    tell itself apart from the one that was killed (its owner id changes, as a
    restarted pod's would).
    """

    def __init__(
        self,
        name: str,
        module: str,
        spec: dict[str, Any],
        *,
        log_dir: Path,
        on_message: MessageHandler,
    ) -> None:
        self.name = name
        self.module = module
        self.spec = spec
        self.incarnation = 0
        self._log_path = log_dir / f"{name}.log"
        self._on_message = on_message
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None
        self._asked_to_end = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def log_path(self) -> Path:
        return self._log_path

    async def start(self) -> None:
        """Start (or start again, after :meth:`kill`) the process."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        await self._drain_reader()
        self._asked_to_end = False
        self.incarnation += 1
        spec = {**self.spec, "name": self.name, "incarnation": self.incarnation}
        if self._log is None:
            self._log = self._log_path.open("ab")  # kept open across restarts
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            env=env,
        )
        self._reader = asyncio.create_task(self._read(self._proc), name=f"read {self.name}")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                try:
                    self._on_message(self.name, message)
                except Exception:  # a bug in a handler must not stop the reading
                    log.exception("handling a message of %s", self.name)

    async def _drain_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                await asyncio.wait_for(reader, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                reader.cancel()

    async def kill(self) -> None:
        """SIGKILL the process (a crash: nothing of it runs any more) and reap it."""
        proc = self._proc
        self._asked_to_end = True
        if proc is None or proc.returncode is not None:
            return
        proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _KILL_TIMEOUT)
        await self._drain_reader()

    async def stop(self) -> None:
        """Ask the process to stop (SIGTERM), then SIGKILL it if it has not within 5 s."""
        proc = self._proc
        self._asked_to_end = True
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                await self.kill()
        await self._drain_reader()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def dump_tasks(self) -> None:
        """Ask the process to write its asyncio tasks' stacks to its log (SIGUSR1)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGUSR1)

    def died(self) -> str | None:
        """How the process ended, if it ended without being asked to; else None."""
        proc = self._proc
        if proc is None or proc.returncode is None or self._asked_to_end:
            return None
        return f"exit code {proc.returncode}"

    def kill_now(self) -> None:
        """SIGKILL without waiting: for the last cleanup, when no event loop may run."""
        self._asked_to_end = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])
