"""Where a simulation runs: a Redis it starts (one server, Sentinel, Cluster), a Redis
it is given, or the in-process fake; the Redis faults it can inject there (a restart,
a failover, every client connection cut), and what a soak samples of it.

Servers are started from the shipped ``docker/redis.conf`` (and
``docker/sentinel.conf``, with its own failover timings) through
:mod:`ponos_redis._redis_server` and :mod:`ponos_redis._topology`, on free
loopback ports, and only they are ever signalled. The stores get the default
settings, except where the README tells users to change them: with Sentinel,
``durability: replicated`` (docs/durability.md: only that keeps an
acknowledged write through a failover).

Every method here blocks (process starts, waits for PING): call them in a thread.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from .._redis_server import RedisServer, redis_server_available
from .._topology import ClusterTopology, SentinelTopology, command, docker_conf, info
from ._options import SimulationOptions

__all__ = ["Backend", "RedisFault"]

log = logging.getLogger("ponos_redis.simulate")

# The shipped sentinel.conf's timings, if the file cannot be read (an installed wheel has no docker/).
_SHIPPED_DOWN_AFTER_MS = 5000
_SHIPPED_FAILOVER_TIMEOUT_MS = 30000
_FAILOVER_WAIT_S = 60.0


def _namespace_key(namespace: str) -> str:
    """A key of the namespace (every key of it has the same hash tag, so the same slot)."""
    return f"ponos:{{{namespace}}}:meta"


@dataclass
class RedisFault:
    """One Redis fault as it happened: when the server went down and when it was back."""

    kind: str  # restart-redis | failover | client-kill
    down_at: float  # time.time() of the SIGKILL (client-kill: of the CLIENT KILL)
    back_at: float | None = None  # restarted (restart) or a new master named (failover)
    detail: str = ""
    port: int | None = None  # the server killed
    killed: int | None = None  # client-kill: the connections the servers cut


def _sentinel_timings(conf: Path) -> tuple[int, int]:
    """``down-after-milliseconds`` and ``failover-timeout`` of a sentinel.conf."""
    text = conf.read_text(encoding="utf-8")

    def value(name: str, default: int) -> int:
        match = re.search(rf"^\s*sentinel\s+{name}\s+\S+\s+(\d+)\s*$", text, re.MULTILINE)
        return int(match[1]) if match else default

    return (
        value("down-after-milliseconds", _SHIPPED_DOWN_AFTER_MS),
        value("failover-timeout", _SHIPPED_FAILOVER_TIMEOUT_MS),
    )


def _conf_or_none(name: str) -> Path | None:
    try:
        return docker_conf(name)
    except FileNotFoundError:
        return None


# What docker/redis.conf says about persistence, for a checkout without docker/ (an installed wheel).
_DURABLE_EXTRA = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}


@dataclass
class Backend:
    """The Redis (or the fake) a run uses; :meth:`start` it, :meth:`stop` it."""

    options: SimulationOptions
    kind: str = "memory"  # memory | external | single | sentinel | cluster
    description: str = ""
    notes: list[str] = field(default_factory=list)
    redis: dict[str, Any] | None = None  # the redis: block of the stores' config (None: memory)
    server: RedisServer | None = None
    sentinel: SentinelTopology | None = None
    cluster: ClusterTopology | None = None
    # Faults run in a worker thread; once stop() has run, a fault under way stops what it
    # restarts (checked before and after each start), so nothing outlives the backend.
    _stopped: bool = False

    @property
    def is_memory(self) -> bool:
        return self.redis is None

    @property
    def can_restart(self) -> bool:
        return self.server is not None or self.sentinel is not None or self.cluster is not None

    @property
    def can_failover(self) -> bool:
        return self.sentinel is not None

    def start(self) -> None:
        opts = self.options
        if opts.memory:
            self.kind, self.description = "memory", "the in-process fake (--memory)"
            return
        if opts.redis_url:
            self.kind, self.description = "external", "the Redis at --redis-url"
            self.redis = {"url": opts.redis_url}
            return
        if not redis_server_available():
            self.kind = "memory"
            self.description = "the in-process fake: redis-server is not on PATH"
            self.notes.append(
                "redis-server is not on PATH: replicas and executors run as asyncio tasks on the "
                "in-process fake, and Redis faults are skipped"
            )
            return
        if opts.topology == "sentinel":
            self._start_sentinel()
        elif opts.topology == "cluster":
            self._start_cluster()
        else:
            self._start_single()

    def _start_single(self) -> None:
        conf = _conf_or_none("redis.conf")
        self.server = RedisServer(conf_file=conf, extra=None if conf else _DURABLE_EXTRA)
        self.server.start()
        self.kind = "single"
        self.description = f"a private redis-server at {self.server.url} from docker/redis.conf"
        self.redis = {"url": self.server.url}

    def _start_sentinel(self) -> None:
        conf = _conf_or_none("sentinel.conf")
        down_after, failover_timeout = (
            _sentinel_timings(conf) if conf else (_SHIPPED_DOWN_AFTER_MS, _SHIPPED_FAILOVER_TIMEOUT_MS)
        )
        self.sentinel = SentinelTopology(
            replicas=2, sentinels=3, down_after_ms=down_after, failover_timeout_ms=failover_timeout
        )
        self.sentinel.start(timeout=60.0)
        self.kind = "sentinel"
        self.description = (
            f"a master, 2 replicas and 3 sentinels from docker/ (down-after {down_after} ms), "
            f"service {self.sentinel.service!r}"
        )
        self.redis = {
            "sentinel": {"hosts": self.sentinel.sentinel_hosts, "service": self.sentinel.service},
            "durability": "replicated",
            "replicas": 1,
        }
        self.notes.append("durability: replicated, as docs/durability.md tells users to for a failover")

    def _start_cluster(self) -> None:
        self.cluster = ClusterTopology(masters=3)
        self.cluster.start(timeout=60.0)
        self.kind = "cluster"
        self.description = (
            f"a 3-master Redis Cluster from docker/redis.conf ({', '.join(self.cluster.startup_nodes)})"
        )
        self.redis = {"cluster": {"nodes": self.cluster.startup_nodes}}

    def spread_over_shards(self, names: list[str]) -> list[str]:
        """On a cluster, the names with a suffix where needed so that namespace i lives on
        master i (mod the masters); elsewhere the names as they are."""
        if self.cluster is None:
            return names
        from redis.crc import key_slot

        owners = self.cluster.slot_owners()
        masters = sorted({port for _, _, port in owners})

        def master_of(namespace: str) -> int:
            slot = key_slot(_namespace_key(namespace).encode())
            return next(port for first, last, port in owners if first <= slot <= last)

        spread: list[str] = []
        for i, name in enumerate(names):
            want = masters[i % len(masters)]
            candidates = (name if n == 0 else f"{name}-{n}" for n in range(1000))
            spread.append(next((c for c in candidates if master_of(c) == want), name))
        return spread

    def namespace_ports(self, namespaces: list[str]) -> dict[str, int]:
        """On a cluster: the port of the master serving each namespace (else empty)."""
        if self.cluster is None:
            return {}
        return {ns: self.cluster.node_for_key(_namespace_key(ns)).port for ns in namespaces}

    # -- faults -------------------------------------------------------------------------

    def restart_redis(self, down_s: float, namespace: str | None = None) -> RedisFault:
        """SIGKILL the server (the master; on a cluster the master of ``namespace``) and start
        it again on its data directory after ``down_s`` seconds."""
        if self.server is not None:
            node = self.server
        elif self.sentinel is not None:
            node = self.sentinel.master()
        elif self.cluster is not None:
            node = (
                self.cluster.node_for_key(_namespace_key(namespace)) if namespace else self.cluster.nodes[0]
            )
        else:
            raise RuntimeError("no Redis of ours to restart")
        self._check_running()
        node.kill()
        fault = RedisFault("restart-redis", time.time(), detail=f"port {node.port}", port=node.port)
        time.sleep(down_s)
        self._start_again(node)
        fault.back_at = time.time()
        if self.cluster is not None:
            self.cluster.wait_ok(timeout=30.0)
        return fault

    def failover(self) -> RedisFault:
        """SIGKILL the Sentinel master, wait for the promotion, restart the old master (it
        rejoins as a replica)."""
        if self.sentinel is None:
            raise RuntimeError("--failover needs the Sentinel topology")
        self._check_running()
        old = self.sentinel.kill_master()
        fault = RedisFault("failover", time.time(), detail=f"master on port {old.port} killed")
        new = self.sentinel.wait_for_failover(old, timeout=_FAILOVER_WAIT_S)
        fault.back_at = time.time()
        fault.detail += f", port {new.port} promoted"
        self._start_again(old)
        return fault

    def _client_nodes(self) -> list[RedisServer]:
        """The servers the stores connect to: the server, the Sentinel master, every cluster node."""
        if self.server is not None:
            return [self.server]
        if self.sentinel is not None:
            return [self.sentinel.master()]
        if self.cluster is not None:
            return list(self.cluster.nodes)
        raise RuntimeError("no Redis of ours")

    def client_kill(self) -> RedisFault:
        """``CLIENT KILL TYPE normal SKIPME yes`` on every server the stores connect to: every
        client connection but this call's own is cut at once (replicas, executors and the
        coordinator alike); nothing is restarted, the clients reconnect by themselves."""
        self._check_running()
        nodes = self._client_nodes()
        fault = RedisFault("client-kill", time.time())
        killed = 0
        for node in nodes:
            killed += int(command(node.port, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
        fault.back_at = fault.down_at
        fault.killed = killed
        where = ", ".join(str(n.port) for n in nodes)
        fault.detail = f"{killed} client connection(s) cut (port {where})"
        return fault

    def sample(self) -> dict[str, int] | None:
        """``used_memory`` and ``DBSIZE`` of the servers the stores use (summed over a
        cluster's nodes), or None when there is no Redis of ours or it does not answer."""
        if self._stopped or not self.can_restart:
            return None
        used = keys = 0
        try:
            for node in self._client_nodes():
                used += int(info(node.port, "memory")["used_memory"])
                keys += int(command(node.port, "DBSIZE"))
        except (redis.RedisError, OSError, RuntimeError):
            return None  # restarting, failing over: this sample has no Redis figures
        return {"used_memory": used, "keys": keys}

    def _check_running(self) -> None:
        if self._stopped:
            raise RuntimeError("the simulation's Redis was stopped")

    def _start_again(self, node: RedisServer) -> None:
        """Start a killed node on its folder, port and config, unless the backend is stopping."""
        self._check_running()
        node.start(timeout=30.0)
        if self._stopped:  # stop() ran meanwhile: it may have missed this process
            node.stop()
            self._check_running()

    def stop(self) -> None:
        """Stop every process this backend started (by PID) and remove their folders."""
        self._stopped = True
        for thing in (self.server, self.sentinel, self.cluster):
            if thing is not None:
                try:
                    thing.stop()
                except Exception:  # stop the others whatever happens
                    log.exception("stopping %r", thing)
