"""``ponos-redis simulate``: a replicated aggregator and its executors, under faults, judged
from the store.

What runs (each replica and executor a separate OS process,
``sys.executable -m ponos_redis.simulate.replica|executor <spec>``):

- N aggregator replicas (:mod:`.replica`), each with the runtime's
  ``ChainPoller`` per chain (the chain lease decides which replica polls),
  ``TaskWorker`` and ``Reaper`` per aggregator namespace. The worker's handler
  waits until the task's block is final, checks the task is still on the
  canonical chain, and sends it to every executor over the fake operator RPC;
- M executors (:mod:`.executor`), each an ``ExecutorRuntime`` on its own
  executor namespace, de-duplicating deliveries with ``mark_task_processed``,
  recovering its inflight list at start-up, and writing an execution log;
- the fake chains: the runtime's ``FakeChain``, a pure function of the seed
  and the step; every process builds the same one and its step follows the
  wall clock from one ``genesis_time`` (:mod:`._chains`), with task events and
  reorgs (up to 3 blocks deep);
- the fake operator RPC: JSON lines over loopback TCP, one fixed port per
  executor (:mod:`._operators`; why not a Redis list: it says there);
- the faults, on a schedule from the seed (:mod:`._faults`): every client
  connection of the Redis cut at once, twice (``CLIENT KILL TYPE normal
  SKIPME yes``, ``--client-kill``, on by default); SIGKILL of a replica
  (``--kill-replica``, on by default) or an executor (``--kill-executor``),
  each restarted later; SIGKILL and restart of the Redis server on its data
  directory (``--restart-redis``, on by default); SIGKILL of the Sentinel
  master (``--failover`` with ``--topology sentinel``).

Where: a private ``redis-server`` from the shipped ``docker/redis.conf``; with
``--topology sentinel`` a master, 2 replicas and 3 sentinels from the shipped
configs (and their failover timings); with ``--topology cluster`` a 3-master
cluster with 3 aggregator namespaces, one on each shard; a Redis of yours with
``--redis-url`` (no Redis faults then); the in-process fake with ``--memory``
or when there is no ``redis-server`` on PATH (replicas and executors then run
as asyncio tasks of one process, and there are no Redis faults).

Store settings are the defaults, except what the README tells users to change
(``durability: replicated`` with Sentinel) and one setting the simulation
needs: ``events_maxlen``. The verdict reads every ``task.completed`` event, so
nothing it judges may be trimmed from the capped event stream: the run sets
``events_maxlen`` to at least twice what it could possibly write (never less
than the default, 100,000: that covers any run of the default length many
times over). ``tasks.retention_s`` stays at its default (a day): finished tasks
are trimmed only after that, far beyond any run (at most an hour). The verdict
checks both anyway, and says so if anything it needed was gone.

A soak (``--soak``, :mod:`._soak`) runs up to a day with the fault schedule
repeated every few minutes, and shortens the store's windows on purpose
(``tasks.retention_s``, and ``processed_ttl_s``, ``events_maxlen`` and
``block_window`` sized from it), so that memory levels off within the run; it
samples Redis memory, its keys and every process's RSS, and the verdict adds
the flat check. Its event streams are read while the run goes on
(:mod:`._follow`), and its execution logs are files, not Redis lists.

With ``--metrics-port P`` (:mod:`._metrics`) every replica and executor serves its
process metrics (stores instrumented, a ``RuntimeCollector``) on its own loopback port
after ``P``, and the coordinator one ``NamespaceCollector`` per namespace on ``P``;
without it prometheus-client is not imported. docs/observability.md shows how to watch
a run with Prometheus.

The verdict (:mod:`._verdict`) is computed from the stores, not from the
simulation's counters: every task created reached a final state; no task was
completed twice (``task.completed`` events per task, the records, and each
replica's log of the completions the store acknowledged to it); every task is
on exactly one status index, its status's (on Redis: the doctor's check,
reading the indexes); no task was executed twice by one executor (the
execution logs); every chain's cursor reached the head; no task of an orphaned
block was completed. The run exits 0 only when every invariant holds.

>>> report = await run_simulation(SimulationOptions(duration_s=15))  # doctest: +SKIP
>>> report.ok, report.broken
"""

from ._options import SimulationOptions, Topology
from ._report import FaultRecord, SimulationReport
from ._run import RunContext, run_simulation
from ._verdict import INVARIANTS, Invariant

__all__ = [
    "INVARIANTS",
    "FaultRecord",
    "Invariant",
    "RunContext",
    "SimulationOptions",
    "SimulationReport",
    "Topology",
    "run_simulation",
]
