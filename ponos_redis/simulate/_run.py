"""The coordinator of a run: start everything, inject the faults, drain, judge, stop.

Order: the Redis (or the fake) → the executors (each waits on its RPC port) →
the replicas (each builds the same fake chains, which start producing blocks
at ``genesis_time``) → the fault schedule while the chains run for
``duration_s`` → the drain (every task final and every cursor at the head,
at most ``drain_timeout_s``) → a graceful stop of every node → the verdict
from the stores → the report. Every wait is bounded in time; every process is
stopped on the way out, by PID, whatever happened (an error, Ctrl-C).

In a soak (:mod:`._soak`) the coordinator also samples the Redis and every
process every ``sample_every_s`` seconds from the chain's start to its end,
and reads every namespace's events as they come (:mod:`._follow`); the
verdict then adds the flat check.

With ``metrics_port`` (:mod:`._metrics`) the coordinator serves one
``NamespaceCollector`` per namespace from before the nodes start; after the
verdict it takes a final reading and keeps serving it ``metrics_linger_s``
seconds (Ctrl-C or SIGTERM ends the wait early), so that Prometheus scrapes
the end state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from rich.console import Console

from .._open import open_aggregator_store
from .._redis_server import find_free_port
from ..config import StorageConfig
from ..errors import InvalidInputError, NotFoundError, PonosStorageError
from ..interfaces import AggregatorStore
from ..models import TaskStatus
from ._backend import Backend, RedisFault
from ._chains import CHAIN_IDS, TASKS_PER_BLOCK, ChainSpec
from ._display import Display, LiveState, ProcessView
from ._execlog import (
    ExecutionLog,
    FileExecutionLog,
    MemoryExecutionLog,
    RedisExecutionLog,
    read_completion_acks,
)
from ._faults import REDIS_DOWN_S, PlannedFault, plan_faults
from ._follow import EventFollower
from ._metrics import MetricsPorts, linger, plan_metrics_ports
from ._nodes import InProcessNode, NodeRunner
from ._options import SimulationOptions
from ._procs import Child
from ._report import FaultRecord, SimulationReport
from ._soak import FLAT_RULE, Sample, SampleWriter, SoakPlan, judge_flat, rss_kib, soak_plan
from ._verdict import NamespaceEvidence, ReplicaKill, collect_evidence, judge

if TYPE_CHECKING:
    from ._exporters import NamespaceMetrics

__all__ = ["RunContext", "run_simulation"]

log = logging.getLogger("ponos_redis.simulate")

# The replicas' runtime settings (not store settings: those stay at their defaults).
CHAIN_LEASE_S = 3.0
REAPER_INTERVAL_S = 1.0
WORKER_POLL_S = 0.1
WORKER_CONCURRENCY = 8
SIGNATURE_TIMEOUT_S = 15.0

_READY_TIMEOUT_S = 60.0
_PROCESS_BOOT_S = 2.0  # replicas start before the chain's genesis by about this much
_POLL_STORE_S = 1.0
_STORE_CALL_TIMEOUT_S = 20.0
_DEFAULT_EVENTS_MAXLEN = 100_000
_FINAL_READ_TRIES = 20  # a soak's last read of the event streams, one a second
# Upper bound of the events one task can cause: saved, then per attempt (claimed, and
# released / retried / reaped), then completed or failed; max_attempts is 5 by default.
_EVENTS_PER_TASK = 1 + 2 * 5 + 1
_EVENTS_PER_BLOCK = 2  # chain.advanced, and a chain.rewound now and then


@dataclass
class RunContext:
    """What a ``before_verdict`` hook gets (tests use it to break an invariant on purpose)."""

    storage: StorageConfig
    namespaces: list[str]
    executor_namespaces: list[str]
    execution_log: ExecutionLog
    chains: list[ChainSpec]


BeforeVerdict = Callable[[RunContext], Awaitable[None]]


def events_maxlen_for(options: SimulationOptions) -> int:
    """An event-stream cap no run of these options can reach (at least the default)."""
    steps = math.ceil(options.duration_s / options.block_time_s) + 1
    bound = options.chains * steps * (TASKS_PER_BLOCK[1] * _EVENTS_PER_TASK + _EVENTS_PER_BLOCK)
    return max(_DEFAULT_EVENTS_MAXLEN, 2 * bound)


async def run_simulation(
    options: SimulationOptions | None = None,
    *,
    console: Console | None = None,
    live: bool | None = None,
    before_verdict: BeforeVerdict | None = None,
) -> SimulationReport:
    """Run the simulation and return its report (``report.exit_code`` is 0 only if every
    invariant held).

    Args:
        options: what to run; default :class:`SimulationOptions()` (what the CLI runs).
        console: where the live view goes (default: stderr).
        live: show the live view; default: when ``console`` is a terminal.
        before_verdict: awaited after the run, before the verdict reads the stores
            (for tests that break an invariant on purpose).

    Raises:
        InvalidInputError: a port the metrics need (``metrics_port``) is in use, or a
            soak too short for its flat check; nothing was started.
    """
    opts = (options or SimulationOptions()).with_seed()
    console = console or Console(stderr=True)
    show = console.is_terminal if live is None else live
    if opts.soak:
        plan = soak_plan(opts, task_lease_s=opts.task_lease_s, reaper_interval_s=REAPER_INTERVAL_S)
        if opts.duration_s < 2 * plan.settle_s:
            raise InvalidInputError(
                f"--soak with --retention {plan.retention_s:g} needs --duration of at least "
                f"{math.ceil(2 * plan.settle_s)} s: the flat check compares the samples taken after "
                f"the store's windows filled ({plan.settle_s:g} s)"
            )
    ports = plan_metrics_ports(opts)
    backend = Backend(opts)
    started = time.monotonic()
    try:
        await asyncio.to_thread(backend.start)
        coordinator = _Coordinator(opts, backend, console, show, before_verdict, ports)
        report = await coordinator.run()
    except BaseException:
        backend.stop()
        raise
    await asyncio.to_thread(backend.stop)
    report.elapsed_s = time.monotonic() - started
    return report


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Send the library's log records (the in-process nodes', the coordinator's stores')
    to a file for the length of the run, so they do not tear through the live view."""
    logger = logging.getLogger("ponos_redis")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    propagate, level = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = propagate, level
        handler.close()


class _Coordinator:
    def __init__(
        self,
        options: SimulationOptions,
        backend: Backend,
        console: Console,
        live: bool,
        before_verdict: BeforeVerdict | None,
        metrics_ports: MetricsPorts | None = None,
    ) -> None:
        assert options.seed is not None
        self.opts = options
        self.seed = options.seed
        self.backend = backend
        self.console = console
        self.live = live
        self.before_verdict = before_verdict
        self.metrics_ports = metrics_ports
        self.namespace_metrics: NamespaceMetrics | None = None
        self.rng = random.Random(f"run-{self.seed}")
        self.run_id = f"sim{self.seed % 1_000_000}-{uuid.uuid4().hex[:6]}"
        self.in_process = backend.is_memory
        self.state = LiveState(duration_s=options.duration_s, title=f"on {backend.kind}, seed {self.seed}")
        self.counters: Counter[str] = Counter()
        self.leases: dict[str, dict[tuple[str, int], int]] = {}
        self.owners: dict[str, str] = {}
        self.ready: dict[str, asyncio.Event] = {}
        self.fault_log: list[FaultRecord] = []
        self.kills: list[ReplicaKill] = []
        self.redis_faults: list[RedisFault] = []
        self.client_kills: list[RedisFault] = []
        self.soak: SoakPlan | None = (
            soak_plan(options, task_lease_s=options.task_lease_s, reaper_interval_s=REAPER_INTERVAL_S)
            if options.soak
            else None
        )
        self.samples: list[Sample] = []
        self.follower: EventFollower | None = None
        self.replicas: list[NodeRunner] = []
        self.executors: list[NodeRunner] = []
        self.stores: dict[str, AggregatorStore] = {}
        self.namespaces: list[str] = []
        self.namespace_ports: dict[str, int] = {}  # on a cluster: the master serving each namespace
        self.executor_namespaces = [f"{self.run_id}-x{j}" for j in range(options.executors)]
        self.chains: list[ChainSpec] = []
        self.genesis = 0.0
        self.notes = list(backend.notes)
        self.log_dir = Path(tempfile.mkdtemp(prefix="ponos-simulate-"))
        self.keep_logs = False  # kept anyway when the run fails
        self.storage = StorageConfig.from_dict(self._storage_mapping())
        self.execution_log: ExecutionLog
        if self.soak is not None:
            self.execution_log = FileExecutionLog(self.log_dir)  # not in the Redis the soak measures
        elif self.storage.redis is None:
            self.execution_log = MemoryExecutionLog()
        else:
            self.execution_log = RedisExecutionLog(self.storage.redis)

    # -- configuration -------------------------------------------------------------------

    def _storage_mapping(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {"events_maxlen": events_maxlen_for(self.opts)}
        if self.soak is not None:
            mapping.update(self.soak.store_settings())
        if self.backend.redis is None:
            mapping["type"] = "memory"
        else:
            mapping["type"] = "redis"
            mapping["redis"] = self.backend.redis
        return mapping

    def _pick_namespaces(self) -> list[str]:
        names = [f"{self.run_id}-a{i}" for i in range(self.opts.namespace_count)]
        return self.backend.spread_over_shards(names)

    # -- messages from the nodes -----------------------------------------------------------

    def _view(self, name: str) -> ProcessView:
        return self.state.processes[name]

    def on_message(self, name: str, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        view = self.state.processes.get(name)
        if kind == "ready":
            self.ready.setdefault(name, asyncio.Event()).set()
            if view is not None:
                view.state = "running"
            if "owner" in message:
                self.owners[name] = str(message["owner"])
        elif kind == "stats" and view is not None:
            view.counts.update({k: int(v) for k, v in message.items() if isinstance(v, int) and k != "t"})
        elif kind == "stale_completion":
            self.counters["stale_completion"] += 1
        elif kind == "rt":
            self._runtime_event(name, message)

    def _runtime_event(self, name: str, message: dict[str, Any]) -> None:
        event = str(message.get("event"))
        self.counters[event] += 1
        if event not in ("lease_acquired", "lease_lost"):
            return
        ns, subject = str(message.get("ns")), str(message.get("subject"))
        try:
            key = (ns, int(subject))
        except ValueError:
            return
        if event == "lease_acquired":
            for held in self.leases.values():
                held.pop(key, None)
            detail = str(message.get("detail", "")).split()
            token = int(detail[-1]) if detail and detail[-1].isdigit() else -1
            self.leases.setdefault(name, {})[key] = token
        else:
            self.leases.get(name, {}).pop(key, None)
        for replica, held in self.leases.items():
            view = self.state.processes.get(replica)
            if view is not None:
                view.leases = {self._chain_label(n, c) for n, c in held}

    def _chain_label(self, ns: str, chain_id: int) -> str:
        if len(self.namespaces) == 1 or ns not in self.namespaces:
            return str(chain_id)
        return f"ns{self.namespaces.index(ns)}/{chain_id}"

    # -- nodes ---------------------------------------------------------------------------

    def _node(self, name: str, role: str, spec: dict[str, Any]) -> NodeRunner:
        self.state.processes[name] = ProcessView(name=name, role=role)
        if self.in_process:
            # Imported here, not at the top: ``python -m ponos_redis.simulate.replica`` must not
            # find its own module already imported by the package (runpy warns about it).
            from .executor import ExecutorNode
            from .replica import ReplicaNode

            shared = self.execution_log
            if role == "replica":
                return InProcessNode(name, ReplicaNode, spec, self.on_message)
            return InProcessNode(
                name, lambda s, e: ExecutorNode(s, e, execution_log=shared), spec, self.on_message
            )
        module = f"ponos_redis.simulate.{role}"
        return Child(name, module, spec, log_dir=self.log_dir, on_message=self.on_message)

    async def _start(self, node: NodeRunner) -> None:
        self.ready[node.name] = asyncio.Event()
        view = self._view(node.name)
        view.state = "starting"
        await node.start()
        view.pid, view.incarnation = node.pid, node.incarnation
        ready = asyncio.create_task(self.ready[node.name].wait())
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                while not ready.done():
                    await asyncio.wait([ready], timeout=0.2)
                    if not node.running and not ready.done():
                        raise RuntimeError(f"{node.name} exited before it was ready:\n{node.log_tail()}")
        except TimeoutError:
            raise RuntimeError(
                f"{node.name} was not ready within {_READY_TIMEOUT_S:g} s:\n{node.log_tail()}"
            ) from None
        finally:
            ready.cancel()

    async def _start_all(self) -> None:
        ports: set[int] = set()
        while len(ports) < self.opts.executors:
            ports.add(find_free_port())
        storage = self._storage_mapping()
        for j, (ns, port) in enumerate(zip(self.executor_namespaces, sorted(ports), strict=True)):
            name = f"executor-{j + 1}"
            spec = {"storage": storage, "namespace": ns, "operator": "0x" + f"{j + 1:040x}", "port": port}
            spec["metrics_port"] = self._metrics_port(name)
            if self.soak is not None:
                spec["execution_log_dir"] = str(self.log_dir)
            self.executors.append(self._node(name, "executor", spec))
        await asyncio.gather(*(self._start(n) for n in self.executors))

        boot = 0.3 if self.in_process else _PROCESS_BOOT_S
        self.genesis = time.time() + boot
        final_step = max(1, round(self.opts.duration_s / self.opts.block_time_s))
        self.chains = [
            ChainSpec(
                namespace=ns,
                chain_id=CHAIN_IDS[c],
                seed=f"{self.seed}-{i}",
                genesis_time=self.genesis,
                block_time_s=self.opts.block_time_s,
                final_step=final_step,
            )
            for i, ns in enumerate(self.namespaces)
            for c in range(self.opts.chains)
        ]
        spec = {
            "storage": storage,
            "namespaces": self.namespaces,
            "chains": [c.to_dict() for c in self.chains],
            "executor_ports": sorted(ports),
            "task_lease_s": self.opts.task_lease_s,
            "chain_lease_s": CHAIN_LEASE_S,
            "reaper_interval_s": REAPER_INTERVAL_S,
            "worker_poll_s": WORKER_POLL_S,
            "concurrency": WORKER_CONCURRENCY,
            "signature_timeout_s": SIGNATURE_TIMEOUT_S,
        }
        for i in range(self.opts.replicas):
            name = f"replica-{i + 1}"
            completion_log = str(self.log_dir / f"completions-{name}.jsonl")
            self.replicas.append(
                self._node(
                    name,
                    "replica",
                    {**spec, "metrics_port": self._metrics_port(name), "completion_log": completion_log},
                )
            )
        await asyncio.gather(*(self._start(n) for n in self.replicas))

    def _metrics_port(self, name: str) -> int | None:
        """The port node ``name`` serves its process metrics on (None: no metrics)."""
        ports = self.metrics_ports
        if ports is None:
            return None
        return ports.replicas.get(name, ports.executors.get(name))

    # -- metrics (--metrics-port) ----------------------------------------------------------

    async def _start_namespace_metrics(self) -> None:
        if self.metrics_ports is None:
            return
        from ._exporters import NamespaceMetrics, required_replicas  # only now: prometheus-client

        self.namespace_metrics = NamespaceMetrics(
            self.stores,
            self.metrics_ports.namespaces,
            replicas_required=required_replicas(self.storage.redis),
        )
        await self.namespace_metrics.start()

    async def _final_metrics(self) -> None:
        """Read the namespaces once more now that nothing runs, and serve that reading
        ``metrics_linger_s`` seconds."""
        metrics = self.namespace_metrics
        if metrics is None or metrics.server is None:
            return
        if not await metrics.final_reading():
            self.notes.append("metrics: the final reading of the namespaces failed")
        seconds = self.opts.metrics_linger_s
        if seconds <= 0:
            return
        url = metrics.server.url

        def announce() -> None:
            self.console.print(
                f"metrics: the run is over; serving the final reading of the namespaces at {url} "
                f"for {seconds:g} s more (Ctrl-C ends it)",
                highlight=False,
                soft_wrap=True,
            )

        await linger(seconds, announce)

    def _note_unexpected_exits(self) -> None:
        for node in [*self.replicas, *self.executors]:
            how = node.died()
            if how is not None:
                self.keep_logs = True
                self.notes.append(
                    f"{node.name} exited by itself ({how}); its log ends with: {node.log_tail(5)}"
                )

    async def _stop_all(self) -> None:
        for group in (self.replicas, self.executors):
            await asyncio.gather(*(n.stop() for n in group), return_exceptions=True)
            for node in group:
                self._view(node.name).state = "stopped"

    def _kill_all_now(self) -> None:
        for node in [*self.replicas, *self.executors]:
            node.kill_now()

    # -- faults --------------------------------------------------------------------------

    def _at(self) -> float:
        return time.time() - self.genesis

    def _record(self, kind: str, target: str, detail: str = "") -> FaultRecord:
        record = FaultRecord(kind=kind, target=target, at_s=self._at(), detail=detail)
        self.fault_log.append(record)
        self.state.faults.append(f"{record.at_s:5.1f} s  {kind} {target} {detail}".rstrip())
        return record

    async def _kill_and_restart(self, node: NodeRunner, kind: str, after_s: float) -> None:
        pid = node.pid
        await node.kill()
        held = self.leases.pop(node.name, {})  # after the kill: every message it sent is in
        if node in self.replicas:
            by_ns: dict[str, dict[int, int]] = {}
            for (ns, chain), token in held.items():
                by_ns.setdefault(ns, {})[chain] = token
            owner = self.owners.get(node.name, "")
            self.kills.append(ReplicaKill(at=time.time(), owner=owner, namespace_chains=by_ns))
        labels = ", ".join(sorted(self._chain_label(ns, c) for ns, c in held))
        chains = f", holding chain lease(s) {labels}" if held else ""
        record = self._record(
            kind, node.name, (f"SIGKILL pid {pid}" if pid else "severed and cancelled") + chains
        )
        self._view(node.name).state = "killed"
        self._view(node.name).leases = set()
        await asyncio.sleep(after_s)
        await self._start(node)
        record.back_after_s = self._at() - record.at_s
        self.state.faults.append(f"{self._at():5.1f} s  {node.name} restarted (#{node.incarnation})")

    async def _redis_fault(self, kind: str) -> None:
        self._record(kind, self.backend.kind, "SIGKILL")
        if kind == "failover":
            fault = await asyncio.to_thread(self.backend.failover)
        else:
            fault = await asyncio.to_thread(self.backend.restart_redis, REDIS_DOWN_S, self.namespaces[0])
        self.redis_faults.append(fault)
        record = self.fault_log[-1]
        record.detail = fault.detail
        record.at_s = fault.down_at - self.genesis
        if fault.back_at is not None:
            record.back_after_s = fault.back_at - fault.down_at
        what = "promoted a replica" if kind == "failover" else "restarted"
        self.state.faults.append(f"{self._at():5.1f} s  redis {what}")

    async def _client_kill(self) -> None:
        record = self._record("client-kill", self.backend.kind, "CLIENT KILL TYPE normal SKIPME yes")
        fault = await asyncio.to_thread(self.backend.client_kill)
        self.client_kills.append(fault)
        record.at_s = fault.down_at - self.genesis
        record.detail = fault.detail
        self.state.faults.append(f"{self._at():5.1f} s  {fault.killed} client connection(s) cut")

    def _victim_replica(self) -> NodeRunner:
        running = [n for n in self.replicas if n.running]
        most = max(len(self.leases.get(n.name, {})) for n in running)
        return self.rng.choice([n for n in running if len(self.leases.get(n.name, {})) == most])

    async def _run_faults(self, plan: list[PlannedFault]) -> None:
        restarts: list[asyncio.Task[None]] = []
        try:
            for fault in plan:
                await asyncio.sleep(max(0.0, self.genesis + fault.at_s - time.time()))
                if fault.kind == "kill-replica":
                    victim = self._victim_replica()
                    restarts.append(
                        asyncio.create_task(self._kill_and_restart(victim, fault.kind, fault.restart_after_s))
                    )
                elif fault.kind == "kill-executor":
                    victim = self.rng.choice([n for n in self.executors if n.running])
                    restarts.append(
                        asyncio.create_task(self._kill_and_restart(victim, fault.kind, fault.restart_after_s))
                    )
                elif fault.kind == "client-kill":
                    await self._client_kill()
                else:
                    await self._redis_fault(fault.kind)
            await asyncio.gather(*restarts)
        finally:
            for task in restarts:
                task.cancel()

    # -- a soak's samples -----------------------------------------------------------------------

    async def _sample_loop(self, writer: SampleWriter) -> None:
        """A sample every ``sample_every_s`` from now until the chain stops."""
        interval = self.opts.sample_interval_s
        end = self.chains[0].end_time
        while time.time() < end:
            taken = time.monotonic()
            sample = Sample(t=self._at())
            redis_figures = await asyncio.to_thread(self.backend.sample)
            if redis_figures is not None:
                sample.used_memory = redis_figures["used_memory"]
                sample.keys = redis_figures["keys"]
            pids = {"coordinator": os.getpid()}
            for node in [*self.replicas, *self.executors]:
                if node.running and node.pid is not None:
                    pids[node.name] = node.pid
            for name, pid in pids.items():
                kib = rss_kib(pid)
                if kib is not None:
                    sample.rss_kib[name] = kib
            self.samples.append(sample)
            writer.write(sample)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - taken)))

    async def _final_events(self) -> None:
        """Read the end of every namespace's events (a soak), trying for a while if Redis is slow."""
        if self.follower is None:
            return
        for _ in range(_FINAL_READ_TRIES):
            if await self.follower.read_all():
                return
            await asyncio.sleep(1.0)
        self.notes.append("the last read of the event streams failed: the verdict misses their end")

    # -- watching the store ------------------------------------------------------------------

    async def _poll_store(self) -> None:
        while True:
            with contextlib.suppress(PonosStorageError, TimeoutError):
                async with asyncio.timeout(_STORE_CALL_TIMEOUT_S):
                    total: Counter[str] = Counter()
                    for store in self.stores.values():
                        for status, n in (await store.count_tasks()).items():
                            total[status.value] += n
                    self.state.store_counts = dict(total)
            self.state.counters = {
                "stale refused": self.counters["stale_completion"],
                "lease lost": self.counters["stale"],
                "deduplicated": self.counters["deduplicated"],
                "reorgs": self.counters["reorg"],
            }
            self._update_heads()
            await asyncio.sleep(_POLL_STORE_S)

    def _update_heads(self) -> None:
        step = min(self.chains[0].final_step, max(0, math.floor(self._at() / self.opts.block_time_s)))
        self.state.heads = {self._chain_label(c.namespace, c.chain_id): step for c in self.chains}

    async def _settled(self) -> bool:
        """Every cursor at the head and no task pending or processing."""
        try:
            async with asyncio.timeout(_STORE_CALL_TIMEOUT_S):
                for chain in self.chains:
                    store = self.stores[chain.namespace]
                    try:
                        if await store.get_last_processed_block(chain.chain_id) != chain.final_step:
                            return False
                    except NotFoundError:
                        return False
                for store in self.stores.values():
                    counts = await store.count_tasks()
                    if counts[TaskStatus.PENDING] or counts[TaskStatus.PROCESSING]:
                        return False
        except (PonosStorageError, TimeoutError):
            return False
        return True

    async def _drain(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.drain_timeout_s
        while loop.time() < deadline:
            if await self._settled():
                return True
            await asyncio.sleep(0.25)
        return False

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> SimulationReport:
        opts = self.opts
        report = SimulationReport(
            seed=self.seed,
            backend=self.backend.description,
            duration_s=opts.duration_s,
            replicas=opts.replicas,
            executors=opts.executors,
            namespaces=[],
            chains=list(CHAIN_IDS[: opts.chains]),
        )
        plan = plan_faults(opts, self.seed, redis_faults=self.backend.can_restart)
        if not self.backend.can_restart and (opts.restart_redis or opts.failover):
            why = (
                "the in-process fake has no Redis"
                if self.backend.is_memory
                else "the Redis is not this run's"
            )
            self.notes.append(f"Redis faults skipped: {why} to restart")
        if self.backend.kind == "external":
            self.notes.append(f"namespaces {self.run_id}-* are left in the Redis at --redis-url")
        if self.soak is not None and not self.backend.can_restart:
            self.notes.append(
                "soak: the Redis is not sampled (it is not this run's); only the processes' RSS is"
                if self.backend.kind == "external"
                else "soak: the in-process fake has no Redis to sample; only the coordinator's RSS is"
            )
        if self.metrics_ports is not None:
            report.metrics = {**self.metrics_ports.to_dict(), "linger_s": opts.metrics_linger_s}
            for line in self.metrics_ports.lines():
                self.console.print(line, highlight=False, soft_wrap=True)
        background: list[asyncio.Task[None]] = []
        try:
            await self._run(report, plan, background)
            await self._final_metrics()  # after the verdict, or an error; not after Ctrl-C
        finally:
            for task in background:
                task.cancel()
            if self.namespace_metrics is not None:
                self.namespace_metrics.close()
            await self._close_stores()
        report.notes = self.notes
        report.faults = self.fault_log
        report.counters = dict(self.counters)
        if (report.ok and not self.keep_logs) or self.in_process:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        else:
            report.log_dir = str(self.log_dir)
        return report

    async def _run(
        self, report: SimulationReport, plan: list[PlannedFault], background: list[asyncio.Task[None]]
    ) -> None:
        opts = self.opts
        writer = SampleWriter(opts.samples_path if self.soak is not None else None)
        try:
            with (
                _logs_to(self.log_dir / "coordinator.log"),
                Display(self.state, self.console, enabled=self.live),
                contextlib.closing(writer),
            ):
                self.namespaces = await asyncio.to_thread(self._pick_namespaces)
                self.namespace_ports = await asyncio.to_thread(self.backend.namespace_ports, self.namespaces)
                report.namespaces = list(self.namespaces)
                for ns in self.namespaces:
                    self.stores[ns] = await open_aggregator_store(self.storage, namespace=ns)
                await self._start_namespace_metrics()
                self.state.phase = "starting executors and replicas"
                await self._start_all()
                self.state.chain_started = time.monotonic() + (self.genesis - time.time())
                background.append(asyncio.create_task(self._poll_store()))
                if self.soak is not None:
                    self.follower = EventFollower(self.stores, self.log_dir, maxlen=self.soak.events_maxlen)
                    background.append(asyncio.create_task(self.follower.run()))
                    background.append(asyncio.create_task(self._sample_loop(writer)))
                self.state.phase = "running"
                faults = asyncio.create_task(self._run_faults(plan))
                background.append(faults)
                await asyncio.sleep(max(0.0, self.chains[0].end_time - time.time()))
                self.state.phase = "faults finishing"
                await asyncio.wait_for(faults, timeout=120.0)
                self.state.phase = "draining"
                if not await self._drain():
                    self.keep_logs = True
                    for node in [*self.replicas, *self.executors]:
                        node.dump_tasks()
                    await asyncio.sleep(0.5)
                    self.notes.append(
                        f"the run did not settle within {opts.drain_timeout_s:g} s (tasks still "
                        "pending or processing, or a cursor behind the head); each process's log "
                        "ends with the stacks of its asyncio tasks"
                    )
                self.state.phase = "stopping"
                self._note_unexpected_exits()
                await self._stop_all()
                for task in background:  # the soak's follower and sampler too: nothing runs now
                    task.cancel()
                await self._final_events()
            await self._judge(report)
        except BaseException as exc:
            for task in background:  # no fault, no restart after this point
                task.cancel()
            self._kill_all_now()
            if not isinstance(exc, Exception):  # Ctrl-C, cancelled: no report, no logs kept
                shutil.rmtree(self.log_dir, ignore_errors=True)
                raise
            report.error = f"{type(exc).__name__}: {exc}"
            log.debug("run failed", exc_info=True)
        for task in background:  # nothing runs any more: the final reading sees the end state
            task.cancel()

    async def _judge(self, report: SimulationReport) -> None:
        if self.before_verdict is not None:
            await self.before_verdict(
                RunContext(
                    storage=self.storage,
                    namespaces=list(self.namespaces),
                    executor_namespaces=list(self.executor_namespaces),
                    execution_log=self.execution_log,
                    chains=list(self.chains),
                )
            )
        truths = [c.truth() for c in self.chains]
        evidence: list[NamespaceEvidence] = []
        for ns in self.namespaces:
            followed = self.follower.events(ns) if self.follower is not None else None
            ev = await collect_evidence(
                self.stores[ns], [t for t in truths if t.namespace == ns], events=followed
            )
            if self.follower is not None:
                ev.trimmed, ev.gaps = True, self.follower.gaps[ns]
            ev.index_check = await self._index_check(ns, ev)
            evidence.append(ev)
        executions = {
            f"{name}": await self.execution_log.read(ns)
            for name, ns in zip([n.name for n in self.executors], self.executor_namespaces, strict=True)
        }
        invariants, figures = judge(
            evidence,
            truths,
            executions,
            replica_kills=self.kills,
            redis_downs=[(f.down_at, self._served_by(f.port)) for f in self.redis_faults],
            acks=read_completion_acks(self.log_dir),
        )
        figures["reorgs"] = sum(t.reorgs for t in truths)
        figures["orphaned_tasks"] = sum(len(t.orphaned) for t in truths)
        figures["connections_cut"] = [f.killed for f in self.client_kills]
        if self.soak is not None:
            flat, series = judge_flat(self.samples, warm_up_s=self.soak.warm_up_s, end_s=self.opts.duration_s)
            invariants.append(flat)
            report.soak = {
                **self.soak.to_dict(),
                "fault_period_s": self.opts.period_s,
                "sample_every_s": self.opts.sample_interval_s,
                "samples": len(self.samples),
                "samples_file": self.opts.samples_path,
                "events_read": dict(self.follower.read) if self.follower is not None else {},
                "rule": FLAT_RULE,
                "series": series,
            }
        report.invariants = invariants
        report.figures = figures

    async def _index_check(self, namespace: str, ev: NamespaceEvidence) -> tuple[int, list[str]] | None:
        """The doctor's status-index check of one namespace (None on the in-process fake)."""
        if self.storage.redis is None:
            return None
        from ..ops.doctor import task_index_problems
        from ..ops.inspect import RedisNamespaceView

        view = RedisNamespaceView(msgspec.structs.replace(self.storage, namespace=namespace))
        try:
            async with asyncio.timeout(_STORE_CALL_TIMEOUT_S * 3):
                return await task_index_problems(view, ev.records)
        except (PonosStorageError, TimeoutError) as exc:
            return 0, [f"the indexes could not be read: {type(exc).__name__}: {exc}"]
        finally:
            await view.close()

    def _served_by(self, port: int | None) -> list[str] | None:
        """On a cluster, the namespaces the master on ``port`` served; elsewhere None (all)."""
        if self.backend.cluster is None or port is None:
            return None
        return [ns for ns, p in self.namespace_ports.items() if p == port]

    async def _close_stores(self) -> None:
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                await store.close()
        with contextlib.suppress(Exception):
            await self.execution_log.close()
