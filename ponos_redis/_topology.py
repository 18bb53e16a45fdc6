"""Redis topologies on loopback for tests and the simulation: replicas, Sentinel, Cluster.

Every process is a :class:`~ponos_redis._redis_server.RedisServer` started from
the shipped ``docker/redis.conf`` (data nodes) or ``docker/sentinel.conf``
(sentinels), overriding only what a loopback topology needs, so the
configuration that ships is the one the tests run. Only processes a topology
started are ever signalled.

- :class:`ReplicaGroup`: a master and N replicas (``replicaof``), every data
  node with ``min-replicas-to-write 1`` and ``repl-diskless-sync-delay 0``.
- :class:`SentinelTopology`: a :class:`ReplicaGroup` watched by sentinels
  (``down-after-milliseconds 1000``, ``failover-timeout 5000``), started in
  the fast order measured in REDIS-NOTES: master (PING), replicas
  (``master_link_status:up``), then the sentinels, ready once each sentinel
  sees the other sentinels and every replica (~2.1 s; all at once takes 5-10 s).
- :class:`ClusterTopology`: N masters (optionally with replicas) with
  ``cluster-enabled yes``, joined by ``redis-cli --cluster create``, ready
  when every node says ``cluster_state:ok`` (~2.1 s for 3 masters, with or
  without a replica each). The cluster bus port is another free port (the
  default, port + 10000, may fall outside the usable range). The shipped
  ``appendfsync always`` is kept: on this machine it did not slow the
  contract suite down measurably against ``everysec``.

Each takes ``secrets`` (``ponos_redis._acl.generate_secrets()``): the shipped
files' access control, with those passwords (the data nodes' ACL file,
``masteruser``/``masterauth``, the sentinels' ``requirepass`` and ``auth-pass``),
as :class:`~ponos_redis._redis_server.RedisServer` renders them. The topology
logs in as ``ponos-admin`` (data nodes) and with the sentinels' password;
``redis_settings()`` is the ``redis:`` block a store connects with, as the
``ponos`` user, its passwords read from the environment variables the secrets
are named by (the caller puts them there). Without ``secrets``, access control
is left out, as on any throwaway test server.

>>> with SentinelTopology() as topo:  # doctest: +SKIP
...     old = topo.kill_master()  # SIGKILL
...     new = topo.wait_for_failover(old)
...     topo.restart(old)  # same dir, port and config: it rejoins as a replica
...     topo.wait_role(old, "slave", timeout=30)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._acl import APP_PASSWORD_ENV, APP_USER, SENTINEL_PASSWORD_ENV
from ._configs import docker_file
from ._redis_server import (
    HOST,
    Auth,
    ExtraConfig,
    RedisServer,
    RedisServerError,
    auth_for_port,
    find_free_port,
)

__all__ = [
    "ClusterTopology",
    "ReplicaGroup",
    "SentinelTopology",
    "TopologyError",
    "docker_conf",
]

T = TypeVar("T")

_POLL_INTERVAL = 0.02
_CONNECT_TIMEOUT = 0.2
_COMMAND_TIMEOUT = 2.0
_PORT_ATTEMPTS = 5
_ADDRESS_IN_USE = "Address already in use"
# The base sentinel.conf's timings that a SentinelTopology replaces with its own.
_SENTINEL_TIMINGS = ("down-after-milliseconds", "failover-timeout")


class TopologyError(RuntimeError):
    """A topology did not start, or did not reach the state waited for in time."""


def docker_conf(name: str) -> Path:
    """The shipped ``docker/<name>`` (``redis.conf`` or ``sentinel.conf``), from a checkout or installed."""
    return docker_file(name)


def command(port: int, *args: Any, timeout: float = _COMMAND_TIMEOUT, auth: Auth | None = None) -> Any:
    """One command to the server on 127.0.0.1:``port``, with a fresh client that does not retry.

    It logs in with ``auth``, by default with the credentials of the server this
    process started on that port (:func:`~ponos_redis._redis_server.auth_for_port`).
    """
    username, password = auth or auth_for_port(port) or (None, None)
    client: Any = redis.Redis(  # Any: the sync client's execute_command is untyped
        host=HOST,
        port=port,
        username=username,
        password=password,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def info(port: int, section: str) -> dict[str, Any]:
    """``INFO <section>`` as redis-py parses it (numbers as numbers, ``slave0`` as a dict)."""
    reply: dict[str, Any] = command(port, "INFO", section)
    return reply


def store_redis_settings(where: dict[str, Any], secrets: Mapping[str, str] | None) -> dict[str, Any]:
    """The ``redis:`` block of a store for ``where`` (``url``, ``sentinel`` or ``cluster``):
    with ``secrets``, logging in as ``ponos`` with the password in ``$PONOS_REDIS_PASSWORD``
    (and the sentinels' in ``$PONOS_SENTINEL_PASSWORD``)."""
    settings = dict(where)
    if secrets is None:
        return settings
    if "sentinel" in settings:
        settings["sentinel"] = {**settings["sentinel"], "sentinel_password_env": SENTINEL_PASSWORD_ENV}
    return {**settings, "username": APP_USER, "password_env": APP_PASSWORD_ENV}


def _pairs(reply: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    """A SENTINEL MASTER / REPLICAS entry as text fields: redis-py parses some of these
    replies into dicts (with typed values) and leaves others flat ``[name, value, ...]``."""
    if isinstance(reply, Mapping):
        return {str(k): str(v) for k, v in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll ``check`` until it returns something other than None (or False); at most ``timeout`` s.

    Connection and reply errors count as "not yet". Raises TopologyError naming
    ``what`` (and the last error) when time runs out.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            result, last_error = None, exc
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise TopologyError(f"{what}: not within {timeout} s{detail}")
        time.sleep(_POLL_INTERVAL)


def _base_dir(dir: Path | None, prefix: str) -> tuple[Path, bool]:
    if dir is not None:
        path = Path(dir).absolute()
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix=prefix)).absolute(), True


def role(server: RedisServer) -> str:
    """``master``, ``slave`` or ``sentinel``, from ROLE."""
    reply = command(server.port, "ROLE")
    return str(reply[0])


class _Topology:
    """Processes started together and stopped together (only their own PIDs), under
    one parent folder: ``dir``, or a temporary one that :meth:`stop` removes."""

    def __init__(self, dir: Path | None) -> None:
        self._dir_arg = dir
        self._dir: Path | None = None
        self._owns_dir = False

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise TopologyError("not started")
        return self._dir

    def _make_dir(self, prefix: str) -> Path:
        self._dir, self._owns_dir = _base_dir(self._dir_arg, prefix)
        return self._dir

    def start(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def _stop_processes(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """SIGKILL every process this topology started and remove its temporary folder. Idempotent."""
        try:
            self._stop_processes()
        finally:
            if self._owns_dir and self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._owns_dir = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ReplicaGroup(_Topology):
    """A master and ``replicas`` replicas on 127.0.0.1, from the shipped ``redis.conf``.

    Every data node gets ``min-replicas-to-write 1`` (when there are replicas)
    and ``repl-diskless-sync-delay 0``; each replica ``replicaof 127.0.0.1
    <master port>``. ``extra`` adds directives to every data node.
    ``dir``: a parent folder for the nodes' folders (``node-0`` is the first
    master); when None a temporary one is made and removed by :meth:`stop`.
    """

    def __init__(
        self,
        *,
        replicas: int = 2,
        conf_file: Path | None = None,
        dir: Path | None = None,
        extra: ExtraConfig | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        super().__init__(dir)
        self._replicas = replicas
        self.secrets = dict(secrets) if secrets is not None else None
        self._conf_file = conf_file if conf_file is not None else docker_conf("redis.conf")
        self._extra: list[tuple[str, str]] = (
            list(extra.items()) if isinstance(extra, Mapping) else list(extra or ())
        )
        self.nodes: list[RedisServer] = []

    def _node_extra(self, master_port: int | None) -> list[tuple[str, str]]:
        extra = [("repl-diskless-sync-delay", "0")]
        if self._replicas:
            extra.append(("min-replicas-to-write", "1"))
        if master_port is not None:
            extra.append(("replicaof", f"{HOST} {master_port}"))
        return extra + self._extra

    def start(self, timeout: float = 20.0) -> None:
        """Start the master, then the replicas; return once every replica's link is up."""
        if self.nodes:
            raise TopologyError("already started")
        deadline = time.monotonic() + timeout
        base = self._make_dir("ponos-replicas-")
        try:
            master = RedisServer(
                dir=base / "node-0",
                conf_file=self._conf_file,
                extra=self._node_extra(None),
                secrets=self.secrets,
            )
            self.nodes.append(master)
            master.start(timeout=max(0.1, deadline - time.monotonic()))
            for i in range(1, self._replicas + 1):
                replica = RedisServer(
                    dir=base / f"node-{i}",
                    conf_file=self._conf_file,
                    extra=self._node_extra(master.port),
                    secrets=self.secrets,
                )
                self.nodes.append(replica)
                replica.start(timeout=max(0.1, deadline - time.monotonic()))
            for replica in self.nodes[1:]:
                self.wait_link_up(replica, timeout=max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def wait_link_up(self, replica: RedisServer, timeout: float) -> None:
        """Wait until ``replica`` reports ``master_link_status:up``."""
        wait_for(
            f"replica on port {replica.port}: master_link_status up",
            lambda: info(replica.port, "replication").get("master_link_status") == "up",
            timeout,
        )

    def _stop_processes(self) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def master(self) -> RedisServer:
        """The first master (the group itself never fails over)."""
        return self.nodes[0]

    @property
    def url(self) -> str:
        return self.master.url

    def redis_settings(self) -> dict[str, Any]:
        """The ``redis:`` block of a store on the master (see :func:`store_redis_settings`)."""
        return store_redis_settings({"url": self.url}, self.secrets)


def sentinel_conf_text(
    base: str,
    *,
    service: str,
    master_port: int,
    quorum: int,
    down_after_ms: int,
    failover_timeout_ms: int,
) -> str:
    """The base sentinel.conf with its master renamed to ``service`` and re-addressed.

    The ``sentinel monitor`` line is replaced in place and followed by the test
    timings (a sentinel reads ``sentinel <option> <name>`` lines only after the
    line that declares the master); the base's own timing lines are commented
    out, and its other lines for that master (``parallel-syncs``, ...) kept.
    """
    monitored = None
    for line in base.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0].lower() == "sentinel" and words[1].lower() == "monitor":
            monitored = words[2]
    if monitored is None:
        raise TopologyError("the base sentinel.conf has no 'sentinel monitor' line")
    lines = [f"# Copied from the shipped sentinel.conf; master '{monitored}' re-addressed and retimed."]
    for line in base.splitlines():
        words = line.split()
        if not (len(words) >= 3 and words[0].lower() == "sentinel" and words[2] == monitored):
            lines.append(line)
            continue
        option = words[1].lower()
        if option == "monitor":
            lines.append(f"sentinel monitor {service} {HOST} {master_port} {quorum}")
            lines.append(f"sentinel down-after-milliseconds {service} {down_after_ms}")
            lines.append(f"sentinel failover-timeout {service} {failover_timeout_ms}")
        elif option in _SENTINEL_TIMINGS:
            lines.append(f"# [SentinelTopology] {line}")
        else:
            lines.append(" ".join(["sentinel", option, service, *words[3:]]))
    return "\n".join(lines) + "\n"


class SentinelTopology(_Topology):
    """A master, ``replicas`` replicas and ``sentinels`` sentinels on 127.0.0.1.

    Data nodes come from ``redis_conf`` (default: the shipped
    ``docker/redis.conf``) as in :class:`ReplicaGroup`; each sentinel gets its
    own folder with its own copy of ``sentinel_conf`` (default: the shipped
    ``docker/sentinel.conf``), since a sentinel rewrites its file, with
    port, bind and dir overridden and ``sentinel monitor <service> 127.0.0.1
    <master port> <quorum>``, ``down-after-milliseconds`` and
    ``failover-timeout`` set for a fast failover.
    """

    def __init__(
        self,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        service: str = "ponos",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        redis_conf: Path | None = None,
        sentinel_conf: Path | None = None,
        dir: Path | None = None,
        extra: ExtraConfig | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        if sentinels < 1 or quorum < 1 or quorum > sentinels:
            raise ValueError(f"need 1 <= quorum <= sentinels, got quorum {quorum} of {sentinels}")
        self.service = service
        self._sentinel_count = sentinels
        self._quorum = quorum
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        super().__init__(dir)
        self._sentinel_conf = sentinel_conf if sentinel_conf is not None else docker_conf("sentinel.conf")
        self._redis_conf = redis_conf
        self._extra = extra
        self._replica_count = replicas
        self.secrets = dict(secrets) if secrets is not None else None
        self.group: ReplicaGroup | None = None
        self.sentinels: list[RedisServer] = []

    # -- addresses ----------------------------------------------------------------

    @property
    def nodes(self) -> list[RedisServer]:
        """The data nodes; ``nodes[0]`` was the first master."""
        return self.group.nodes if self.group is not None else []

    @property
    def sentinel_hosts(self) -> list[str]:
        """``host:port`` of each sentinel, as the ``redis.sentinel.hosts`` setting takes them."""
        return [f"{HOST}:{s.port}" for s in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,.../<service>``."""
        return f"redis+sentinel://{','.join(self.sentinel_hosts)}/{self.service}"

    def redis_settings(self) -> dict[str, Any]:
        """The ``redis:`` block of a store behind the sentinels (see :func:`store_redis_settings`)."""
        where = {"sentinel": {"hosts": self.sentinel_hosts, "service": self.service}}
        return store_redis_settings(where, self.secrets)

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the data nodes, then the sentinels; return once the sentinels agree.

        Raises:
            TopologyError, RedisServerError: something did not start within ``timeout``.
        """
        if self.group is not None:
            raise TopologyError("already started")
        deadline = time.monotonic() + timeout
        base = self._make_dir("ponos-sentinel-")
        try:
            self.group = ReplicaGroup(
                replicas=self._replica_count,
                conf_file=self._redis_conf,
                dir=base,
                extra=self._extra,
                secrets=self.secrets,
            )
            self.group.start(timeout=max(0.1, deadline - time.monotonic()))
            template = self._sentinel_conf.read_text(encoding="utf-8")
            for i in range(self._sentinel_count):
                sentinel_dir = base / f"sentinel-{i}"
                sentinel_dir.mkdir(parents=True, exist_ok=True)
                copy = sentinel_dir / "sentinel-base.conf"
                copy.write_text(
                    sentinel_conf_text(
                        template,
                        service=self.service,
                        master_port=self.group.master.port,
                        quorum=self._quorum,
                        down_after_ms=self._down_after_ms,
                        failover_timeout_ms=self._failover_timeout_ms,
                    ),
                    encoding="utf-8",
                )
                sentinel = RedisServer(
                    dir=sentinel_dir,
                    conf_file=copy,
                    binary="redis-sentinel",
                    secrets=self.secrets,
                    auth=None if self.secrets is None else (None, self.secrets[SENTINEL_PASSWORD_ENV]),
                )
                self.sentinels.append(sentinel)
                sentinel.start(timeout=max(0.1, deadline - time.monotonic()))
            self.wait_healthy(timeout=max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def _stop_processes(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        if self.group is not None:
            self.group.stop()

    # -- what the sentinels say ---------------------------------------------------------

    def sentinel_master(self, sentinel: RedisServer) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` from one sentinel, as text fields."""
        return _pairs(command(sentinel.port, "SENTINEL", "MASTER", self.service))

    def master_port(self) -> int | None:
        """The master's port as a quorum of running sentinels reports it; None if they do not agree."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            try:
                reply = command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                continue
            if reply:
                port = int(reply[1])
                votes[port] = votes.get(port, 0) + 1
        agreed = [port for port, n in votes.items() if n >= self._quorum]
        return agreed[0] if len(agreed) == 1 else None

    def node_at(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"no data node of this topology on port {port}")

    def master(self, timeout: float = 10.0) -> RedisServer:
        """The data node the sentinels name as master (waiting up to ``timeout`` s for a quorum)."""
        return self.node_at(wait_for("sentinels agreeing on a master", self.master_port, timeout))

    # -- failures ---------------------------------------------------------------------

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (its folder stays, for :meth:`restart`); returns it."""
        node = self.master()
        node.kill()
        return node

    def restart(self, node: RedisServer, timeout: float = 10.0) -> None:
        """Start a killed node (data node or sentinel) again on its folder, port and config."""
        if node not in self.nodes and node not in self.sentinels:
            raise TopologyError(f"{node!r} is not part of this topology")
        node.start(timeout=timeout)

    def wait_for_failover(self, old: RedisServer, timeout: float = 15.0) -> RedisServer:
        """Wait until the sentinels name a master other than ``old`` and it says ROLE master."""

        def promoted() -> RedisServer | None:
            port = self.master_port()
            if port is None or port == old.port:
                return None
            node = self.node_at(port)
            return node if role(node) == "master" else None

        return wait_for(f"failover away from port {old.port}", promoted, timeout)

    def wait_role(self, node: RedisServer, expected: str, timeout: float) -> None:
        """Wait until ``node`` says ROLE ``expected`` (``master`` or ``slave``)."""
        wait_for(f"port {node.port} with role {expected}", lambda: role(node) == expected, timeout)

    def wait_healthy(self, timeout: float = 20.0) -> RedisServer:
        """Wait until all is well: every process runs, a quorum agrees on the master, every
        other node is its replica with the link up, and every sentinel sees all replicas as
        healthy and the other sentinels. Returns the master."""
        stopped = [n for n in [*self.nodes, *self.sentinels] if not n.running]
        if stopped:
            raise TopologyError(f"not running: {stopped}")
        replicas = len(self.nodes) - 1

        def healthy() -> RedisServer | None:
            port = self.master_port()
            if port is None:
                return None
            master = self.node_at(port)
            if role(master) != "master":
                return None
            for node in self.nodes:
                if node is not master and info(node.port, "replication").get("master_link_status") != "up":
                    return None
            for sentinel in self.sentinels:
                state = self.sentinel_master(sentinel)
                if (
                    state.get("flags") != "master"
                    or int(state.get("num-other-sentinels", -1)) != len(self.sentinels) - 1
                ):
                    return None
                seen = command(sentinel.port, "SENTINEL", "REPLICAS", self.service)
                flags = [_pairs(r).get("flags") for r in seen]
                if flags.count("slave") != replicas:
                    return None
            return master

        return wait_for("a healthy sentinel topology", healthy, timeout)


class ClusterTopology(_Topology):
    """``masters`` Redis Cluster masters on 127.0.0.1, each with ``replicas`` replicas,
    from the shipped ``redis.conf``.

    Each node: ``cluster-enabled yes``, ``cluster-config-file nodes-<port>.conf``,
    ``cluster-node-timeout 2000`` and ``cluster-port`` another free port; plus
    ``extra`` (for example ``appendfsync everysec``). Created with
    ``redis-cli --cluster create ... --cluster-replicas <replicas> --cluster-yes``;
    ready when every node says ``cluster_state:ok`` and every replica's link is up.
    A killed master's replica takes over after ~3.5-4.5 s (``node_timeout_ms``
    2000); the old master, restarted, rejoins as a replica of it.
    """

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 0,
        conf_file: Path | None = None,
        dir: Path | None = None,
        extra: ExtraConfig | None = None,
        node_timeout_ms: int = 2000,
        redis_cli: str = "redis-cli",
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        if masters < 3:
            raise ValueError(f"redis-cli --cluster create needs at least 3 masters, got {masters}")
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        super().__init__(dir)
        self._masters = masters
        self._replicas = replicas
        self._conf_file = conf_file if conf_file is not None else docker_conf("redis.conf")
        self._extra: list[tuple[str, str]] = (
            list(extra.items()) if isinstance(extra, Mapping) else list(extra or ())
        )
        self._node_timeout_ms = node_timeout_ms
        self._redis_cli = redis_cli
        self.secrets = dict(secrets) if secrets is not None else None
        self.nodes: list[RedisServer] = []

    @property
    def startup_nodes(self) -> list[str]:
        """``host:port`` of every node, as the ``redis.cluster.nodes`` setting takes them."""
        return [f"{HOST}:{n.port}" for n in self.nodes]

    def redis_settings(self) -> dict[str, Any]:
        """The ``redis:`` block of a store on the cluster (see :func:`store_redis_settings`)."""
        return store_redis_settings({"cluster": {"nodes": self.startup_nodes}}, self.secrets)

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster, and return once every node says cluster_state:ok."""
        if self.nodes:
            raise TopologyError("already started")
        cli = shutil.which(self._redis_cli)
        if cli is None:
            raise FileNotFoundError(f"{self._redis_cli!r} not found on PATH")
        deadline = time.monotonic() + timeout
        base = self._make_dir("ponos-cluster-")
        try:
            for i in range(self._masters * (1 + self._replicas)):
                self.nodes.append(self._start_node(base / f"node-{i}", deadline))
            create = [
                cli,
                "--cluster",
                "create",
                *self.startup_nodes,
                "--cluster-replicas",
                str(self._replicas),
            ]
            env = None
            auth = self.nodes[0].auth
            if auth is not None:  # the password through the environment, never the command line
                create[1:1] = ["--user", auth[0] or "default"]
                env = {**os.environ, "REDISCLI_AUTH": auth[1]}
            result = subprocess.run(
                [*create, "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
                env=env,
            )
            if result.returncode != 0:
                raise TopologyError(f"{' '.join(create)} failed ({result.returncode}):\n{result.stdout}")
            self.wait_ok(timeout=max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def _start_node(self, node_dir: Path, deadline: float) -> RedisServer:
        """One node on a fixed port pair (the port names the config file), retried if either is taken."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port, bus = find_free_port(), find_free_port()
            if port == bus:
                continue
            extra = [
                ("cluster-enabled", "yes"),
                ("cluster-config-file", f"nodes-{port}.conf"),
                ("cluster-node-timeout", str(self._node_timeout_ms)),
                ("cluster-port", str(bus)),
                *self._extra,
            ]
            node = RedisServer(
                dir=node_dir, port=port, conf_file=self._conf_file, extra=extra, secrets=self.secrets
            )
            try:
                node.start(timeout=max(0.1, deadline - time.monotonic()))
            except RedisServerError as exc:
                node.stop()
                if _ADDRESS_IN_USE in str(exc) and attempt < _PORT_ATTEMPTS:
                    continue
                raise
            return node
        raise TopologyError(f"no free port pair for a cluster node after {_PORT_ATTEMPTS} attempts")

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every running node says cluster_state:ok and knows every node, and
        every running replica's link to its master is up."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.running:
                continue

            def ok(node: RedisServer = node) -> bool:
                text = str(command(node.port, "CLUSTER", "INFO"))
                fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
                return (
                    fields.get("cluster_state") == "ok"
                    and fields.get("cluster_known_nodes") == str(len(self.nodes))
                    and fields.get("cluster_slots_ok") == "16384"
                )

            wait_for(f"cluster node on port {node.port}: cluster_state ok", ok, deadline - time.monotonic())

            def linked(node: RedisServer = node) -> bool:
                fields = info(node.port, "replication")
                return fields.get("role") == "master" or fields.get("master_link_status") == "up"

            wait_for(
                f"cluster node on port {node.port}: replication link up", linked, deadline - time.monotonic()
            )

    def _any_port(self) -> int:
        for node in self.nodes:
            if node.running:
                return node.port
        raise TopologyError("no cluster node is running")

    def keyslot(self, key: str) -> int:
        """The key's hash slot, as the cluster computes it (CLUSTER KEYSLOT)."""
        return int(command(self._any_port(), "CLUSTER", "KEYSLOT", key))

    def slot_owners(self) -> list[tuple[int, int, int]]:
        """The slot map as (first slot, last slot, master port), from CLUSTER SLOTS of a running node."""
        reply = command(self._any_port(), "CLUSTER", "SLOTS")
        return sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in reply)

    def node_for_key(self, key: str) -> RedisServer:
        """The master that owns ``key``'s slot."""
        slot = self.keyslot(key)
        for first, last, port in self.slot_owners():
            if first <= slot <= last:
                return next(n for n in self.nodes if n.port == port)
        raise TopologyError(f"slot {slot} of {key!r} is not served")

    def restart(self, node: RedisServer, timeout: float = 10.0) -> None:
        """Start a killed node again on its folder, port and config (and so its nodes file)."""
        if node not in self.nodes:
            raise TopologyError(f"{node!r} is not part of this cluster")
        node.start(timeout=timeout)

    def wait_for_failover(self, old: RedisServer, timeout: float = 20.0) -> None:
        """Wait until no slot is served by ``old`` any more and every running node says ok."""

        def moved() -> bool:
            if any(port == old.port for _, _, port in self.slot_owners()):
                return False
            return all(
                "cluster_state:ok" in str(command(n.port, "CLUSTER", "INFO")) for n in self.nodes if n.running
            )

        wait_for(f"cluster failover away from port {old.port}", moved, timeout)

    def _stop_processes(self) -> None:
        for node in self.nodes:
            node.stop()
