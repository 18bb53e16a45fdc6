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

From the shipped ``docker/redis.conf`` with its access control: ``secrets`` fills
in its ``${NAME}`` placeholders and renders ``docker/users.acl`` into the
server's directory (the passwords reach the server through these files, never
its command line); :attr:`RedisServer.auth` is the admin user it answers to.

>>> secrets = generate_secrets()  # doctest: +SKIP
>>> with RedisServer(conf_file=docker_file("redis.conf"), secrets=secrets) as server:  # doctest: +SKIP
...     client = redis.Redis(port=server.port, username=server.auth[0], password=server.auth[1])
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
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

from ._acl import ADMIN_PASSWORD_ENV, ADMIN_USER, placeholders, render, render_line

__all__ = [
    "HOST",
    "Auth",
    "RedisServer",
    "RedisServerError",
    "auth_for_port",
    "find_free_port",
    "redis_server_available",
]

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
# The rendered ACL file, in the server's directory (the base config's aclfile names its template).
ACL_NAME = "users.acl"
# Environment variables holding passwords (ponos_redis._acl), kept from the server's environment.
_SECRET_ENV_RE = re.compile(r"PONOS_[A-Z0-9_]*PASSWORD")

ExtraConfig = Mapping[str, str] | Iterable[tuple[str, str]]
# (user name, password) to log in with; a user name of None is the default user (AUTH <password>).
Auth = tuple[str | None, str]


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


def _base_conf_lines(conf_file: Path, secrets: Mapping[str, str] | None) -> tuple[list[str], str | None]:
    """The base config's lines, with those RedisServer must own commented out,
    and the ``aclfile`` the base names (None: none).

    Copied rather than ``include``d: Redis acts on some directives while it
    reads them (``dir`` changes directory, ``logfile`` opens the file), so a
    ``dir /data`` meant for a container would stop the server before any
    later line could override it. With ``secrets``, placeholders are filled in
    and the ``aclfile`` line is left to RedisServer (which renders the file into
    the server's directory); without, the access control is left out: the
    ``aclfile`` line and every line that needs a secret are commented out.
    """
    lines = [f"# Base config, copied from {conf_file}; RedisServer comments out what it sets itself."]
    aclfile = None
    for line in conf_file.read_text(encoding="utf-8").splitlines():
        words = line.split(None, 1)
        key = words[0].lower() if words else ""
        if key == "aclfile":
            aclfile = words[1].strip().strip('"') if len(words) > 1 else ""
            why = "renders it itself" if secrets is not None else "no secrets: access control left out"
            lines.append(f"# [RedisServer: {why}] {line}")
        elif key in _BASE_OVERRIDDEN_KEYS:
            lines.append(f"# [RedisServer] {line}")
        elif key.startswith("#") or not placeholders(line):
            lines.append(line)
        elif secrets is None:
            lines.append(f"# [RedisServer: no secrets: access control left out] {line}")
        else:
            lines.append(render_line(line, secrets))
    return lines, aclfile


def _names_aclfile(conf_file: Path) -> bool:
    """Whether a config file has an ``aclfile`` line."""
    try:
        text = conf_file.read_text(encoding="utf-8")
    except OSError:
        return False  # start() reports it
    return any(line.split(None, 1)[:1] == ["aclfile"] for line in text.splitlines())


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


def auth_for_port(port: int) -> Auth | None:
    """The :attr:`RedisServer.auth` of this process's server on ``port`` (None: none known)."""
    with _registry_lock:
        servers = [s for s in _registry.values() if s._port == port and s._owner_pid == os.getpid()]
    servers.sort(key=lambda s: not s.running)
    return servers[0].auth if servers else None


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

    ``secrets``: passwords by environment variable name (``ponos_redis._acl``),
    for a base config with access control (the shipped ``redis.conf`` and
    ``sentinel.conf``). Its ``${NAME}`` placeholders are filled in, and the ACL
    file its ``aclfile`` names is rendered from ``acl_file`` (default: the file
    of that name next to ``conf_file``, the shipped ``users.acl``) into this
    server's directory, which ``aclfile`` then names. Without ``secrets`` the
    base's access control is left out (its ``aclfile`` line and every line
    needing a secret are commented out): a throwaway server whose default user
    may do anything, as one without a base config is.

    ``auth``: the (user, password) this manager logs in with to see the server
    ready; default: the ACL file's ``ponos-admin``, when the config has an ACL
    file and ``secrets`` has that user's password. :attr:`auth` gives it to
    tests (``_topology.command`` uses it).
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
        secrets: Mapping[str, str] | None = None,
        acl_file: Path | None = None,
        auth: Auth | None = None,
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
        self._secrets = dict(secrets) if secrets is not None else None
        self._acl_file = Path(acl_file).absolute() if acl_file is not None else None
        has_acl = any(key.lower() == "aclfile" for key, _ in self._extra) or (
            self._conf_file is not None and _names_aclfile(self._conf_file)
        )
        if auth is None and has_acl and self._secrets is not None and ADMIN_PASSWORD_ENV in self._secrets:
            auth = (ADMIN_USER, self._secrets[ADMIN_PASSWORD_ENV])
        self._auth = auth
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
    def auth(self) -> Auth | None:
        """The (user, password) this manager logs in with; None: the default user, no password."""
        return self._auth

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
        aclfile = None
        if self._conf_file is not None:
            base, aclfile = _base_conf_lines(self._conf_file, self._secrets)
            lines += base
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
        if aclfile is not None and self._secrets is not None and "aclfile" not in extra_keys:
            assert self._conf_file is not None
            template = self._acl_file or self._conf_file.parent / Path(aclfile).name
            _write_private(d / ACL_NAME, render(template.read_text(encoding="utf-8"), self._secrets))
            defaults.append(("aclfile", _quote(str(d / ACL_NAME))))
        lines += [f"{key} {value}" for key, value in defaults if key not in extra_keys]
        lines += [f"{key} {value if value else chr(34) * 2}" for key, value in self._extra]
        _write_private(d / CONF_NAME, "\n".join(lines) + "\n")
        self._conf_written = True

    def _launch(self, binary: str) -> None:
        # The server reads its passwords from its config files: none in its environment
        # (a test process holds them there for its stores' password_env).
        env = {k: v for k, v in os.environ.items() if not _SECRET_ENV_RE.fullmatch(k)}
        with open(self.dir / OUT_NAME, "ab") as out:
            self._proc = subprocess.Popen(
                [binary, str(self.dir / CONF_NAME)],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
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
        username, password = self._auth if self._auth is not None else (None, None)
        client = redis.Redis(
            host=HOST,
            port=self.port,
            username=username,
            password=password,
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


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it may hold passwords or their hashes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _tail(output: str, lines: int = 20) -> str:
    text = "\n".join(output.strip().splitlines()[-lines:])
    return text or "(no output)"
