"""The fault schedule: which fault comes when, a function of the options and the seed.

Faults are spread over the run so each one's effect (a takeover, writes
resuming) can be measured apart from the others, and all of them end before
the chain stops, leaving the drain to show that everything recovered:

- ``client-kill`` at ~12 % and ~85 % of the run: ``CLIENT KILL TYPE normal
  SKIPME yes`` on the Redis (every master of a cluster): every client
  connection of the replicas, the executors and the coordinator is cut at
  once, in the middle of claims, renewals, completions and reaps;
- ``kill-replica`` at ~25 % of the run: SIGKILL of the aggregator replica that
  holds the most chain leases (the one whose loss costs most), restarted
  ``restart_after_s`` later (a new incarnation, with a new owner id);
- ``kill-executor`` at ~40 %: SIGKILL of an executor, restarted later;
- ``restart-redis`` at ~55 %: SIGKILL of the Redis server (the master), started
  again on its data directory after a short outage;
- ``failover`` at ~70 % (``--topology sentinel``): SIGKILL of the master; the
  sentinels promote a replica; the old master is restarted and rejoins.

Each time gets a seeded jitter of a few percent of the run. In a soak the
same schedule repeats every ``fault_period_s`` (the percentages are of the
period), in each whole period that ends before the chain stops.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._options import SimulationOptions

__all__ = ["PlannedFault", "plan_faults"]

REDIS_DOWN_S = 0.5


@dataclass(frozen=True)
class PlannedFault:
    at_s: float  # seconds after the chain started
    kind: str  # client-kill | kill-replica | kill-executor | restart-redis | failover
    restart_after_s: float = 0.0  # kill-*: when the process is started again


def plan_faults(options: SimulationOptions, seed: int, *, redis_faults: bool) -> list[PlannedFault]:
    """The faults of a run, in time order. ``redis_faults``: whether Redis faults can be made."""
    rng = random.Random(f"faults-{seed}")
    cuts = random.Random(f"client-kill-{seed}")  # its own draws: the others' times do not depend on it
    period = options.period_s
    periods = max(1, int(options.duration_s // period))
    restart_after = round(max(1.0, min(5.0, 0.15 * period)), 2)
    plan: list[PlannedFault] = []

    def at(start: float, fraction: float, draws: random.Random = rng) -> float:
        return round(start + period * (fraction + draws.uniform(-0.03, 0.03)), 2)

    for start in (k * period for k in range(periods)):
        if redis_faults and options.client_kill:
            plan.append(PlannedFault(at(start, 0.12, cuts), "client-kill"))
        if options.kill_replica:
            plan.append(PlannedFault(at(start, 0.25), "kill-replica", restart_after))
        if options.kill_executor:
            plan.append(PlannedFault(at(start, 0.40), "kill-executor", restart_after))
        if redis_faults and options.restart_redis:
            plan.append(PlannedFault(at(start, 0.55), "restart-redis"))
        if redis_faults and options.failover:
            plan.append(PlannedFault(at(start, 0.70), "failover"))
        if redis_faults and options.client_kill:
            plan.append(PlannedFault(at(start, 0.85, cuts), "client-kill"))
    return sorted(plan, key=lambda f: f.at_s)
