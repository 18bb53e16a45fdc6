"""What a simulation run is asked to do."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidInputError

__all__ = ["SimulationOptions", "Topology"]

Topology = Literal["single", "sentinel", "cluster"]

MAX_REPLICAS = 16
MAX_EXECUTORS = 16
MAX_CHAINS = 8
MAX_NAMESPACES = 8
MAX_DURATION_S = 3600.0
MAX_SOAK_DURATION_S = 86400.0
# --soak's defaults: the fault schedule repeats every 5 minutes, a sample every 5 s, and
# the store keeps finished tasks 2 minutes (see SimulationOptions).
SOAK_FAULT_PERIOD_S = 300.0
SOAK_SAMPLE_EVERY_S = 5.0
SOAK_RETENTION_S = 120.0


@dataclass(frozen=True, kw_only=True)
class SimulationOptions:
    """The knobs of a run; the defaults are what ``ponos-redis simulate`` runs.

    ``duration_s`` is how long the chain produces blocks; the run then drains
    (every task final, every cursor at the head, at most ``drain_timeout_s``)
    and judges. ``seed`` fixes the chain (blocks, task events, reorgs) and the
    fault schedule; None picks one, which the report shows so the run can be
    repeated. ``namespaces`` is how many aggregator namespaces share the Redis
    (None: 1, or 3 on a cluster so they spread over its shards); each has its
    own chains.

    ``metrics_port`` (None: no metrics, and prometheus-client is not imported)
    serves Prometheus metrics: the coordinator's one ``NamespaceCollector`` per
    namespace on that port, and each replica's and executor's process metrics
    on the ports after it (replicas first); 0 lets the coordinator pick free
    ports. ``metrics_linger_s`` keeps the coordinator's endpoint up that long
    after the run, with the final reading, so that Prometheus scrapes the end
    state.

    ``client_kill`` (on by default) cuts every client connection of the Redis
    at a few points of the run (``CLIENT KILL TYPE normal SKIPME yes``): the
    replicas, executors and the coordinator reconnect through their retry
    policy while they claim, renew, complete and reap.

    ``soak`` makes it a long run (``duration_s`` up to a day): the fault
    schedule repeats every ``fault_period_s`` (None: 300 s), the coordinator
    samples Redis ``used_memory``, ``DBSIZE`` and every process's RSS every
    ``sample_every_s`` seconds (into ``samples_path`` as JSON lines, when given),
    and the verdict adds the flat check (:mod:`._soak`). For memory to level
    off within the run, the store's windows are shortened to ``retention_s``
    (None: 120 s): ``tasks.retention_s``, and what follows from it
    (:func:`._soak.soak_store_settings`); every other setting stays at its
    default.
    """

    duration_s: float = 20.0
    replicas: int = 3
    executors: int = 2
    chains: int = 2
    seed: int | None = None
    redis_url: str | None = None
    topology: Topology = "single"
    memory: bool = False
    kill_replica: bool = True
    kill_executor: bool = False
    restart_redis: bool = True
    failover: bool = False
    namespaces: int | None = None
    block_time_s: float = 0.25
    task_lease_s: float = 3.0
    drain_timeout_s: float = 30.0
    metrics_port: int | None = None
    metrics_linger_s: float = 0.0
    client_kill: bool = True
    soak: bool = False
    fault_period_s: float | None = None
    sample_every_s: float | None = None
    retention_s: float | None = None
    samples_path: str | None = None

    def __post_init__(self) -> None:
        def bounded(name: str, value: float, low: float, high: float) -> None:
            if isinstance(value, bool) or not (math.isfinite(value) and low <= value <= high):
                raise InvalidInputError(f"{name} must be from {low:g} to {high:g}, got {value!r}")

        bounded("duration", self.duration_s, 1.0, MAX_SOAK_DURATION_S if self.soak else MAX_DURATION_S)
        soak_only = {
            "--fault-period": self.fault_period_s,
            "--sample-every": self.sample_every_s,
            "--retention": self.retention_s,
            "--soak-samples": self.samples_path,
        }
        if not self.soak and any(value is not None for value in soak_only.values()):
            given = [name for name, value in soak_only.items() if value is not None]
            raise InvalidInputError(f"{', '.join(given)} needs --soak")
        if self.fault_period_s is not None:
            bounded("fault period", self.fault_period_s, 5.0, MAX_SOAK_DURATION_S)
        if self.sample_every_s is not None:
            bounded("sample interval", self.sample_every_s, 0.2, 600.0)
        if self.retention_s is not None:
            bounded("retention", self.retention_s, 1.0, 86400.0)
        bounded("replicas", self.replicas, 1, MAX_REPLICAS)
        bounded("executors", self.executors, 1, MAX_EXECUTORS)
        bounded("chains", self.chains, 1, MAX_CHAINS)
        bounded("block time", self.block_time_s, 0.05, 10.0)
        bounded("task lease", self.task_lease_s, 0.5, 300.0)
        bounded("drain timeout", self.drain_timeout_s, 1.0, 600.0)
        if self.namespaces is not None:
            bounded("namespaces", self.namespaces, 1, MAX_NAMESPACES)
        if self.seed is not None:
            bounded("seed", self.seed, 0, 2**63 - 1)
        bounded("metrics linger", self.metrics_linger_s, 0.0, MAX_DURATION_S)
        if self.metrics_port is not None:
            # The namespace endpoint, then one port per replica and executor.
            bounded("metrics port", self.metrics_port, 0, 65535 - self.replicas - self.executors)
        elif self.metrics_linger_s:
            raise InvalidInputError("--metrics-linger needs --metrics-port")
        if self.topology not in ("single", "sentinel", "cluster"):
            raise InvalidInputError(f"topology must be single, sentinel or cluster, got {self.topology!r}")
        if self.memory and (self.redis_url or self.topology != "single"):
            raise InvalidInputError(
                "--memory runs on the in-process fake: it takes no --redis-url or --topology"
            )
        if self.redis_url and self.topology != "single":
            raise InvalidInputError("--topology starts its own servers: it takes no --redis-url")
        if self.failover and self.topology != "sentinel":
            raise InvalidInputError("--failover needs --topology sentinel")

    def with_seed(self) -> SimulationOptions:
        """These options with a seed: the given one, or a fresh random one."""
        if self.seed is not None:
            return self
        return dataclasses.replace(self, seed=random.SystemRandom().randrange(1, 10**9))

    @property
    def namespace_count(self) -> int:
        if self.namespaces is not None:
            return self.namespaces
        return 3 if self.topology == "cluster" else 1

    @property
    def period_s(self) -> float:
        """How often the fault schedule repeats: the whole run, or ``fault_period_s`` in a soak."""
        if not self.soak:
            return self.duration_s
        return min(self.duration_s, self.fault_period_s or SOAK_FAULT_PERIOD_S)

    @property
    def sample_interval_s(self) -> float:
        """Seconds between two soak samples."""
        return self.sample_every_s or SOAK_SAMPLE_EVERY_S

    @property
    def soak_retention_s(self) -> float:
        """The finished tasks' retention of a soak (``tasks.retention_s``)."""
        return self.retention_s or SOAK_RETENTION_S
