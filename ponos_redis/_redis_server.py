"""Private ``redis-server`` processes on loopback, for tests and the demo CLI's embedded server.

A :class:`RedisServer` writes its own config file into its own directory, runs
``redis-server <conf>`` in the foreground (``daemonize no``) bound to 127.0.0.1,
and is ready once a PING answered by *that* process (its ``process_id``) comes
back. Only the process it started is ever signalled: never a server it did not
start (such as a machine-wide Redis on 6379).

>>> with RedisServer(extra={"appendonly": "yes"}) as server:  # doctest: +SKIP
...     client = redis.Redis.from_url(server.url)
...     client.set("k", "v")
...     server.kill()  # SIGKILL, the directory (and its AOF) stays
...     server.restart()  # same port, directory and config file
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["HOST", "RedisServer", "RedisServerError", "find_free_port", "redis_server_available"]

HOST = "127.0.0.1"

CONF_NAME = "ponos-redis-server.conf"
LOG_NAME = "redis-server.log"
OUT_NAME = "redis-server.out"  # the process's stdout and stderr
PID_NAME = "redis-server.pid"

_PORT_ATTEMPTS = 5
_POLL_INTERVAL = 0.005
_CONNECT_TIMEOUT = 0.1
_PING_TIMEOUT = 0.5
_REAP_TIMEOUT = 10.0
_ADDRESS_IN_USE = "Address already in use"
_READY_LINE = "Ready to accept connections"
# Set by the constructor's arguments, not by ``extra``: the manager relies on them.
_MANAGED_KEYS = frozenset({"bind", "daemonize", "dir", "port"})
# Dropped from a base config: owned by RedisServer, or acted on as soon as read (logfile, dir).
_BASE_OVERRIDDEN_KEYS = _MANAGED_KEYS | {"logfile", "pidfile", "unixsocket", "unixsocketperm"}

ExtraConfig = Mapping[str, str] | Iterable[tuple[str, str]]


class RedisServerError(RuntimeError):
    """The server could not be started (its log's last lines are in the message)."""


class _ServerExited(Exception):
    def __init__(self, returncode: int, output: str) -> None:
        super().__init__(returncode, output)
        self.returncode = returncode
        self.output = output


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_available(binary: str = "redis-server") -> bool:
    """Whether ``binary`` can be found on PATH (or is an executable path)."""
    return shutil.which(binary) is not None


def _quote(value: str) -> str:
    """A single config-file argument (Redis's ``sdssplitargs`` syntax)."""
    if value and not any(c in value for c in " \t\"'\\#"):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_line_free(text: str, what: str) -> None:
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"{what} must not contain line breaks or NUL: {text!r}")


def _base_conf_lines(conf_file: Path) -> list[str]:
    """The base config's lines, with those RedisServer must own commented out.

    Copied rather than ``include``d: Redis acts on some directives while it
    reads them (``dir`` changes directory, ``logfile`` opens the file), so a
    ``dir /data`` meant for a container would stop the server before any
    later line could override it.
    """
    lines = [f"# Base config, copied from {conf_file}; RedisServer comments out what it sets itself."]
    for line in conf_file.read_text(encoding="utf-8").splitlines():
        words = line.split(None, 1)
        if words and words[0].lower() in _BASE_OVERRIDDEN_KEYS:
            lines.append(f"# [RedisServer] {line}")
        else:
            lines.append(line)
    return lines


def _normalise_extra(extra: ExtraConfig | None) -> list[tuple[str, str]]:
    items = list(extra.items()) if isinstance(extra, Mapping) else list(extra or ())
    for key, value in items:
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"config directive must be one word, got {key!r}")
        _check_line_free(value, f"value of {key!r}")
        if key.lower() in _MANAGED_KEYS:
            raise ValueError(f"{key!r} is set by RedisServer itself; use its constructor arguments")
    return items


# Servers of this process that may still need stopping (or their temporary directory removing).
_registry: dict[int, RedisServer] = {}
_registry_lock = threading.Lock()
_atexit_registered = False


def _register(server: RedisServer) -> None:
    global _atexit_registered
    with _registry_lock:
        _registry[id(server)] = server
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True


def _unregister(server: RedisServer) -> None:
    with _registry_lock:
        _registry.pop(id(server), None)


def _stop_all_at_exit() -> None:
    with _registry_lock:
        servers = list(_registry.values())
        _registry.clear()
    for server in servers:
        if server._owner_pid != os.getpid():  # a forked child must not kill its parent's servers
            continue
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            server.stop()


class RedisServer:
    """One private ``redis-server`` process on 127.0.0.1.

    ``dir``: the server's working directory (config file, log, AOF/RDB). When
    None a temporary one is made at the first :meth:`start` and removed by
    :meth:`stop` unless ``keep_dir`` is true. A directory given here is never
    removed.

    ``port``: a fixed port; when None a free one is picked at the first start,
    and a new one is tried (up to 5 times) if another process takes it first.
    Once started, the port stays the same across :meth:`restart`.

    ``conf_file``: a base config (say the shipped ``docker/redis.conf``),
    copied first into the server's config file, with its ``bind``, ``port``,
    ``dir``, ``daemonize``, ``logfile``, ``pidfile`` and ``unixsocket*``
    lines commented out; the manager's own settings follow and win. Without
    it the defaults are a throwaway server: ``save ""`` and ``appendonly no``;
    with it, the base file's persistence settings stand.

    ``extra``: more directives, written last and verbatim (config-file syntax:
    quote values that contain spaces yourself; an empty value is written as
    ``""``). A mapping, or a list of pairs when a directive repeats. ``port``,
    ``bind``, ``dir`` and ``daemonize`` are refused; ``logfile``, ``save``,
    ``appendonly`` and ``pidfile`` replace the defaults.

    ``binary``: the program to run (name on PATH or path); it must be
    redis-server itself (or exec it), since readiness checks its PID.
    """

    def __init__(
        self,
        *,
        dir: Path | None = None,
        port: int | None = None,
        conf_file: Path | None = None,
        extra: ExtraConfig | None = None,
        binary: str = "redis-server",
        keep_dir: bool = False,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, got {port}")
        if conf_file is not None:
            _check_line_free(str(conf_file), "conf_file")
        if dir is not None:
            _check_line_free(str(dir), "dir")
        self._dir = Path(dir).absolute() if dir is not None else None
        self._owns_dir = dir is None
        self._keep_dir = keep_dir
        self._port = port
        self._port_fixed = port is not None
        self._conf_file = Path(conf_file).absolute() if conf_file is not None else None
        self._extra = _normalise_extra(extra)
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._conf_written = False
        self._dir_removed = False
        self._owner_pid = os.getpid()

    # -- properties --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("no port yet: the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def host(self) -> str:
        return HOST

    @property
    def pid(self) -> int:
        """The PID of the last process started (it may have exited since)."""
        if self._proc is None:
            raise RedisServerError("no process yet: the server has not been started")
        return self._proc.pid

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise RedisServerError("no directory yet: the server has not been started")
        return self._dir

    @property
    def conf_path(self) -> Path:
        return self.dir / CONF_NAME

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_NAME

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {state} port={self._port} dir={self._dir}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING (at most ``timeout`` seconds in all).

        After a :meth:`kill` (or a crash) this starts it again on the same
        port, directory and config file, as :meth:`restart` does.
        """
        if self.running:
            raise RedisServerError(f"{self!r} is already running")
        if self._dir_removed:
            raise RedisServerError("this server was stopped and its directory removed; make a new one")
        binary = shutil.which(self._binary)
        if binary is None:
            raise FileNotFoundError(f"{self._binary!r} not found on PATH")
        deadline = time.monotonic() + timeout
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="ponos-redis-")).absolute()
        else:
            self._dir.mkdir(parents=True, exist_ok=True)
        _register(self)

        attempt = 0
        while True:
            attempt += 1
            if not self._conf_written:
                if self._port is None or (attempt > 1 and not self._port_fixed):
                    self._port = find_free_port()
                self._write_conf()
            log_offset, out_offset = self._log_sizes()
            self._launch(binary)
            try:
                self._wait_ready(deadline, log_offset, out_offset)
            except _ServerExited as exc:
                if _ADDRESS_IN_USE in exc.output and not self._port_fixed and attempt < _PORT_ATTEMPTS:
                    self._conf_written = False
                    continue
                raise RedisServerError(
                    f"redis-server on port {self._port} exited with code {exc.returncode} "
                    f"(attempt {attempt}); its output ends with:\n{_tail(exc.output)}"
                ) from None
            except TimeoutError:
                self._terminate(graceful=False)
                output = self._new_output(log_offset, out_offset)
                raise RedisServerError(
                    f"redis-server on port {self._port} did not answer PING within {timeout} s; "
                    f"its output ends with:\n{_tail(output)}"
                ) from None
            except BaseException:
                self._terminate(graceful=False)
                raise
            self._port_fixed = True
            return

    def restart(self, timeout: float = 10.0) -> None:
        """SIGKILL the process if it runs, then start it again on the same port, directory and config."""
        self.kill()
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it; the directory stays, for :meth:`restart`."""
        self._terminate(graceful=False)

    def stop(self, *, graceful: bool = False, timeout: float = 10.0) -> None:
        """Stop the process and remove a temporary directory (unless ``keep_dir``).

        SIGKILL by default; with ``graceful`` SIGTERM, then SIGKILL if it has
        not exited within ``timeout`` seconds. Safe to call more than once.
        """
        try:
            self._terminate(graceful=graceful, timeout=timeout)
        finally:
            if self._owns_dir and not self._keep_dir and self._dir is not None and not self._dir_removed:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir_removed = True
            _unregister(self)

    def __enter__(self) -> Self:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------

    def _write_conf(self) -> None:
        d = self.dir
        extra_keys = {key.lower() for key, _ in self._extra}
        lines = ["# Written by ponos_redis._redis_server.RedisServer."]
        if self._conf_file is not None:
            lines += _base_conf_lines(self._conf_file)
            lines.append("# RedisServer's own settings, which win over the base above.")
        defaults: list[tuple[str, str]] = [
            ("daemonize", "no"),
            ("bind", HOST),
            ("port", str(self.port)),
            ("dir", _quote(str(d))),
            ("logfile", _quote(str(d / LOG_NAME))),
            ("pidfile", _quote(str(d / PID_NAME))),
        ]
        if self._conf_file is None:
            defaults += [("save", '""'), ("appendonly", "no")]
        lines += [f"{key} {value}" for key, value in defaults if key not in extra_keys]
        lines += [f"{key} {value if value else chr(34) * 2}" for key, value in self._extra]
        (d / CONF_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._conf_written = True

    def _launch(self, binary: str) -> None:
        with open(self.dir / OUT_NAME, "ab") as out:
            self._proc = subprocess.Popen(
                [binary, str(self.dir / CONF_NAME)],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _log_sizes(self) -> tuple[int, int]:
        sizes = []
        for name in (LOG_NAME, OUT_NAME):
            try:
                sizes.append((self.dir / name).stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        return sizes[0], sizes[1]

    def _new_output(self, log_offset: int, out_offset: int) -> str:
        """What the log file and stdout/stderr got since the offsets."""
        parts = []
        for name, offset in ((LOG_NAME, log_offset), (OUT_NAME, out_offset)):
            try:
                with open(self.dir / name, "rb") as f:
                    f.seek(offset)
                    parts.append(f.read().decode("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def _wait_ready(self, deadline: float, log_offset: int, out_offset: int) -> None:
        proc = self._proc
        assert proc is not None
        client = redis.Redis(
            host=HOST,
            port=self.port,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_PING_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                returncode = proc.poll()
                if returncode is not None:
                    raise _ServerExited(returncode, self._new_output(log_offset, out_offset))
                if self._answers(client, proc.pid, log_offset, out_offset):
                    return
                if time.monotonic() >= deadline:
                    raise TimeoutError
                time.sleep(_POLL_INTERVAL)
        finally:
            client.close()

    def _answers(self, client: redis.Redis, pid: int, log_offset: int, out_offset: int) -> bool:
        """Whether our process (not another one on the same port) answers and is done loading."""
        try:
            client.ping()
            server_pid = client.info("server").get("process_id")
        except redis.BusyLoadingError:
            return False  # loading an AOF/RDB: up, not ready
        except (redis.AuthenticationError, redis.ResponseError):
            # A password from the base config: the PID cannot be read, trust the log instead.
            return _READY_LINE in self._new_output(log_offset, out_offset)
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        # A different PID: someone else's server on this port; ours will exit with "Address in use".
        return server_pid == pid

    def _terminate(self, *, graceful: bool, timeout: float = _REAP_TIMEOUT) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # Popen.send_signal/kill do nothing once the child is reaped, so a recycled PID is never hit.
        if graceful:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(_REAP_TIMEOUT)


def _tail(output: str, lines: int = 20) -> str:
    text = "\n".join(output.strip().splitlines()[-lines:])
    return text or "(no output)"
