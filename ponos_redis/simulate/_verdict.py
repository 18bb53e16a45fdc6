"""The verdict: the run's invariants, judged from what the stores hold, and its figures.

Nothing here trusts the simulation's own counters. The inputs are:

- each aggregator namespace's task records (``get_task``) and event stream
  (``events()``): ``task.saved``, ``task.claimed``, ``task.completed``,
  ``task.reaped``, ``chain.advanced`` ... with the store's own timestamps;
- each chain's cursor (``get_last_processed_block``);
- on Redis, each namespace's status indexes (``tasks:<status>``), read through
  the doctor's check (:func:`ponos_redis.ops.doctor.task_index_problems`);
- each executor's execution log, and each replica's completion log: the
  completions the store acknowledged to its workers (:mod:`._execlog`);
- the chain as the coordinator served it (:class:`ChainTruth`): which blocks
  ended on the canonical chain and which were orphaned by a reorg.

The event stream is capped (``events_maxlen``) and finished tasks are trimmed
after ``tasks.retention_s``: a run sizes both so nothing it judges is gone
(see the package docstring), and the verdict checks that it was so (every
task record has its ``task.saved`` event, every completed record its
``task.completed`` event) rather than passing on missing evidence. A soak
shortens both on purpose: its events are read while the run goes on
(:mod:`._follow`; ``gaps`` counts the reads that may have missed some), and a
task whose record retention trimmed counts as final when its final event was
read (``NamespaceEvidence.trimmed``).
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotFoundError
from ..interfaces import AggregatorStore
from ..models import StoreEvent, TaskRecord, TaskStatus
from ._execlog import CompletionAck

__all__ = [
    "INVARIANTS",
    "ChainTruth",
    "Invariant",
    "NamespaceEvidence",
    "ReplicaKill",
    "collect_evidence",
    "judge",
]

FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED)
_EXAMPLES = 5

KEPT = "the store kept everything the verdict reads"
FINAL_STATE = "every task created reached a final state"
ONE_COMPLETION = "no task was completed twice"
ONE_STATUS_INDEX = "every task is on exactly one status index, its status's"
ONE_EXECUTION = "no task was executed twice by one executor"
CURSOR_AT_HEAD = "every chain's cursor reached the head"
NO_ORPHAN_COMPLETED = "no task of an orphaned block was completed"
INVARIANTS = (
    KEPT,
    FINAL_STATE,
    ONE_COMPLETION,
    ONE_STATUS_INDEX,
    ONE_EXECUTION,
    CURSOR_AT_HEAD,
    NO_ORPHAN_COMPLETED,
)


@dataclass
class ChainTruth:
    """One chain of one namespace at the end of the run: its head, the ids of the tasks
    on the final canonical chain (blocks 0 to ``head``) and of those a reorg orphaned
    (on the chain at some step, not at the end)."""

    namespace: str
    chain_id: int
    head: int
    canonical: set[str]
    orphaned: set[str]
    reorgs: int = 0


@dataclass
class Invariant:
    name: str
    ok: bool = True
    checked: int = 0
    violations: int = 0
    examples: list[str] = field(default_factory=list)
    note: str = ""  # how it was judged, when that is not the usual way

    def fail(self, example: str) -> None:
        self.ok = False
        self.violations += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(example)

    @property
    def detail(self) -> str:
        note = f" ({self.note})" if self.note else ""
        if self.ok:
            return f"{self.checked} checked{note}"
        return f"{self.violations} violation(s) of {self.checked}{note}: " + "; ".join(self.examples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "checked": self.checked,
            "violations": self.violations,
            "examples": self.examples,
            "note": self.note,
        }


@dataclass
class NamespaceEvidence:
    """What one aggregator namespace's store holds at the end of the run.

    ``trimmed``: retention may have trimmed finished tasks' records (a soak); ``gaps``:
    reads of the event stream that may have missed events (:mod:`._follow`);
    ``index_check``: the status indexes' check, ``(tasks checked, problems)``, or None
    where there are no separate indexes (the in-process fake).
    """

    namespace: str
    events: list[StoreEvent]
    records: dict[str, TaskRecord | None]
    cursors: dict[int, int | None]
    trimmed: bool = False
    gaps: int = 0
    index_check: tuple[int, list[str]] | None = None


@dataclass(frozen=True)
class ReplicaKill:
    """A replica incarnation that was SIGKILLed at ``at`` (time.time()), with what it held then."""

    at: float
    owner: str
    namespace_chains: Mapping[str, Mapping[int, int]]  # namespace -> chain id -> lease token held


async def collect_evidence(
    store: AggregatorStore,
    chains: Sequence[ChainTruth],
    *,
    events: list[StoreEvent] | None = None,
    page: int = 50,
) -> NamespaceEvidence:
    """Read everything the verdict needs from one namespace's store (``events``: the ones
    read while the run went on, in a soak; None: the stream as it is now)."""
    if events is None:
        events = [event async for event in store.events()]
    ids: set[str] = {e.subject for e in events if e.kind.startswith("task.")}
    for chain in chains:
        ids |= chain.canonical | chain.orphaned
    records: dict[str, TaskRecord | None] = {}

    async def read(task_id: str) -> None:
        try:
            records[task_id] = await store.get_task(task_id)
        except NotFoundError:
            records[task_id] = None

    ordered = sorted(ids)
    for start in range(0, len(ordered), page):
        await asyncio.gather(*(read(task_id) for task_id in ordered[start : start + page]))
    records = {task_id: records[task_id] for task_id in ordered}
    cursors: dict[int, int | None] = {}
    for chain in chains:
        try:
            cursors[chain.chain_id] = await store.get_last_processed_block(chain.chain_id)
        except NotFoundError:
            cursors[chain.chain_id] = None
    return NamespaceEvidence(store.namespace, events, records, cursors)


def _reason(text: str | None) -> str:
    """A failure reason with its numbers (attempts, counts) folded, so alike reasons group."""
    return re.sub(r"\d+", "N", text or "(no reason)")[:160]


def _ts(event: StoreEvent) -> float:
    return event.at.timestamp()


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def judge(
    evidence: Sequence[NamespaceEvidence],
    chains: Sequence[ChainTruth],
    executions: Mapping[str, Sequence[tuple[str, str]]],
    *,
    replica_kills: Sequence[ReplicaKill] = (),
    redis_downs: Sequence[tuple[float, Collection[str] | None]] = (),
    acks: Sequence[CompletionAck] = (),
) -> tuple[list[Invariant], dict[str, Any]]:
    """``redis_downs``: when each Redis fault killed a server, and the namespaces it served
    (None: all of them). ``acks``: the completions the store acknowledged to the workers
    (the replicas' completion logs)."""
    inv = {name: Invariant(name) for name in INVARIANTS}
    chains_of: dict[str, list[ChainTruth]] = defaultdict(list)
    for chain in chains:
        chains_of[chain.namespace].append(chain)
    acks_of: dict[str, dict[str, list[CompletionAck]]] = defaultdict(lambda: defaultdict(list))
    for ack in acks:
        acks_of[ack.namespace][ack.task_id].append(ack)

    for ev in evidence:
        _judge_namespace(ev, chains_of[ev.namespace], acks_of[ev.namespace], inv)
    indexes = inv[ONE_STATUS_INDEX]
    if all(ev.index_check is None for ev in evidence):
        indexes.note = "not applicable: the in-process fake keeps no status index apart from its records"
    if any(ev.trimmed for ev in evidence):
        inv[FINAL_STATE].note = "a task retention trimmed counts when its final event was read"
    if acks:
        inv[
            ONE_COMPLETION
        ].note = f"the store's events, and {len(acks)} acknowledgements in the replicas' logs"

    checked_exec = inv[ONE_EXECUTION]
    for executor, entries in sorted(executions.items()):
        runs: dict[str, set[str]] = defaultdict(set)
        for task_id, execution_id in entries:
            runs[task_id].add(execution_id)
        for task_id, ids in sorted(runs.items()):
            checked_exec.checked += 1
            if len(ids) > 1:
                checked_exec.fail(f"{task_id} executed {len(ids)} times by {executor}")

    figures = _figures(evidence, executions, replica_kills, redis_downs)
    return [inv[name] for name in INVARIANTS], figures


def _final_events(events: Iterable[StoreEvent]) -> dict[str, str]:
    """The last final status (completed, failed) each task's events gave it."""
    final: dict[str, str] = {}
    for event in events:
        if event.kind.startswith("task.") and event.status in (
            TaskStatus.COMPLETED.value,
            TaskStatus.FAILED.value,
        ):
            final[event.subject] = event.status
    return final


def _judge_namespace(
    ev: NamespaceEvidence,
    chains: Sequence[ChainTruth],
    acks: Mapping[str, Sequence[CompletionAck]],
    inv: dict[str, Invariant],
) -> None:
    ns = ev.namespace
    saved: set[str] = set()
    completions: dict[str, list[StoreEvent]] = defaultdict(list)
    for event in ev.events:
        if event.kind == "task.saved":
            saved.add(event.subject)
        elif event.kind == "task.completed":
            completions[event.subject].append(event)
    final_seen = _final_events(ev.events) if ev.trimmed else {}
    canonical: set[str] = set()
    orphaned: set[str] = set()
    for chain in chains:
        canonical |= chain.canonical
        orphaned |= chain.orphaned

    kept = inv[KEPT]
    if ev.gaps:
        kept.fail(
            f"{ns}: {ev.gaps} read(s) of the event stream may have missed events trimmed before "
            "they were read"
        )
    for task_id, record in sorted(ev.records.items()):
        if record is None:
            continue
        kept.checked += 1
        if task_id not in saved:
            kept.fail(f"{ns}/{task_id}: a task record without its task.saved event (the stream was trimmed)")
        elif record.status is TaskStatus.COMPLETED and not completions.get(task_id):
            kept.fail(f"{ns}/{task_id}: completed, but no task.completed event (the stream was trimmed)")

    final = inv[FINAL_STATE]
    for task_id in sorted(canonical | saved):
        final.checked += 1
        record = ev.records.get(task_id)
        if record is None:
            if task_id in final_seen:
                continue  # finished, then trimmed by retention
            where = "on the chain" if task_id in canonical else "saved"
            final.fail(f"{ns}/{task_id}: {where} but no record in the store")
        elif record.status not in FINAL:
            held = f", owner {record.owner}, lease until {record.lease_until}" if record.owner else ""
            final.fail(f"{ns}/{task_id}: still {record.status.value} (attempts {record.attempts}{held})")

    once = inv[ONE_COMPLETION]
    for task_id, record in sorted(ev.records.items()):
        if record is None and task_id not in final_seen and task_id not in acks:
            continue
        once.checked += 1
        problem = _completion_problem(record, completions.get(task_id, []), acks.get(task_id, []))
        if problem:
            once.fail(f"{ns}/{task_id}: {problem}")
    for task_id in sorted(set(acks) - set(ev.records)):
        once.checked += 1
        once.fail(f"{ns}/{task_id}: acknowledged as completed, but the store never had the task")

    if ev.index_check is not None:
        checked, problems = ev.index_check
        indexes = inv[ONE_STATUS_INDEX]
        indexes.checked += checked
        for problem in problems:
            indexes.fail(f"{ns}: {problem}")

    cursor = inv[CURSOR_AT_HEAD]
    for chain in chains:
        cursor.checked += 1
        got = ev.cursors.get(chain.chain_id)
        if got != chain.head:
            cursor.fail(f"{ns}/chain {chain.chain_id}: cursor {got}, head {chain.head}")

    orphan = inv[NO_ORPHAN_COMPLETED]
    for task_id in sorted(orphaned):
        orphan.checked += 1
        record = ev.records.get(task_id)
        if completions.get(task_id) or (record is not None and record.status is TaskStatus.COMPLETED):
            orphan.fail(f"{ns}/{task_id}: its block was orphaned, yet it was completed")


def _completion_problem(
    record: TaskRecord | None, completed: Sequence[StoreEvent], acks: Sequence[CompletionAck]
) -> str | None:
    """What is wrong with one task's completions, or None: more than one ``task.completed``
    event; one, but the record is not completed; acknowledged to workers under more than
    one token; acknowledged under a token the store's completion does not carry, or with
    no completion in the store at all."""
    if len(completed) > 1:
        return f"{len(completed)} task.completed events"
    if completed and record is not None and record.status is not TaskStatus.COMPLETED:
        return f"a task.completed event, but the record is {record.status.value}"
    tokens = sorted({ack.token for ack in acks})
    if len(tokens) > 1:
        owners = ", ".join(sorted({ack.owner for ack in acks}))
        return f"the store acknowledged its completion under {len(tokens)} tokens {tokens} (to {owners})"
    if tokens:
        ack = next(a for a in acks if a.token == tokens[0])
        if not completed:
            status = "gone" if record is None else record.status.value
            return (
                f"acknowledged as completed to {ack.owner} (token {ack.token}), "
                f"but no task.completed event and the record is {status}"
            )
        if completed[0].token != ack.token:
            return (
                f"acknowledged to {ack.owner} under token {ack.token}, "
                f"but the store's task.completed carries token {completed[0].token}"
            )
    return None


def _figures(
    evidence: Sequence[NamespaceEvidence],
    executions: Mapping[str, Sequence[tuple[str, str]]],
    replica_kills: Sequence[ReplicaKill],
    redis_downs: Sequence[tuple[float, Collection[str] | None]],
) -> dict[str, Any]:
    created = completed = trimmed = 0
    failed: Counter[str] = Counter()
    reclaimed: set[tuple[str, str]] = set()
    latencies: list[float] = []
    first_saved: float | None = None
    last_completed: float | None = None
    for ev in evidence:
        claims: dict[tuple[str, int | None], float] = {}
        for event in ev.events:
            at = _ts(event)
            if event.kind == "task.saved":
                created += 1
                first_saved = at if first_saved is None else min(first_saved, at)
            elif event.kind == "task.claimed":
                claims[(event.subject, event.token)] = at
            elif event.kind == "task.completed":
                claimed_at = claims.get((event.subject, event.token))
                if claimed_at is not None:
                    latencies.append(at - claimed_at)
                last_completed = at if last_completed is None else max(last_completed, at)
            elif event.kind == "task.reaped" and event.status == TaskStatus.PENDING.value:
                reclaimed.add((ev.namespace, event.subject))
        final_seen = _final_events(ev.events) if ev.trimmed else {}
        for task_id, record in ev.records.items():
            if record is None:
                status = final_seen.get(task_id)  # trimmed by retention: its final event tells
                trimmed += status is not None
                if status == TaskStatus.COMPLETED.value:
                    completed += 1
                elif status == TaskStatus.FAILED.value:
                    failed["(trimmed by retention: the reason is not kept)"] += 1
            elif record.status is TaskStatus.COMPLETED:
                completed += 1
            elif record.status is TaskStatus.FAILED:
                failed[_reason(record.last_error)] += 1
    window = (last_completed - first_saved) if first_saved is not None and last_completed is not None else 0.0
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    return {
        "tasks_created": created,
        "tasks_completed": completed,
        "tasks_failed": dict(sorted(failed.items())),
        "tasks_reclaimed": len(reclaimed),
        "tasks_trimmed": trimmed,
        "executions": sum(len({e for _, e in entries}) for entries in executions.values()),
        "throughput_per_s": round(completed / window, 1) if window > 0 else None,
        "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "latency_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "takeovers": [_takeover(kill, evidence) for kill in replica_kills],
        "writes_resumed_after_s": [
            _resumed(at, [ev for ev in evidence if namespaces is None or ev.namespace in namespaces])
            for at, namespaces in redis_downs
        ],
    }


def _takeover(kill: ReplicaKill, evidence: Iterable[NamespaceEvidence]) -> dict[str, Any]:
    """How long after ``kill`` its chains moved under another lease, and its tasks were claimed
    again by another owner (or finished), as the store's events tell it."""
    chain_times: list[float] = []
    task_times: list[float] = []
    held_tasks = 0
    for ev in evidence:
        held = kill.namespace_chains.get(ev.namespace, {})
        for chain_id, token in held.items():
            for event in ev.events:
                at = _ts(event)
                if (
                    at >= kill.at
                    and event.kind == "chain.advanced"
                    and event.subject == str(chain_id)
                    and event.token != token
                ):
                    chain_times.append(at - kill.at)
                    break
        holder: dict[str, str | None] = {}
        for event in ev.events:
            if _ts(event) > kill.at:
                break
            if event.kind == "task.claimed":
                holder[event.subject] = event.owner
            elif event.kind.startswith("task."):
                holder[event.subject] = None
        mine = {task_id for task_id, owner in holder.items() if owner == kill.owner}
        held_tasks += len(mine)
        pending = set(mine)
        for event in ev.events:
            if not pending:
                break
            at = _ts(event)
            if at <= kill.at or event.subject not in pending:
                continue
            if (event.kind == "task.claimed" and event.owner != kill.owner) or event.status in (
                TaskStatus.COMPLETED.value,
                TaskStatus.FAILED.value,
            ):
                task_times.append(at - kill.at)
                pending.discard(event.subject)
    return {
        "owner": kill.owner,
        "chains_held": sum(len(c) for c in kill.namespace_chains.values()),
        "chain_takeover_s": round(max(chain_times), 2) if chain_times else None,
        "tasks_held": held_tasks,
        "tasks_taken_over": len(task_times),
        "task_takeover_s": round(max(task_times), 2) if task_times else None,
    }


def _resumed(down_at: float, evidence: Iterable[NamespaceEvidence]) -> float | None:
    """Seconds from the Redis kill at ``down_at`` to the first write after it in ``evidence``."""
    firsts = [at for ev in evidence for event in ev.events if (at := _ts(event)) > down_at]
    return round(min(firsts) - down_at, 2) if firsts else None
