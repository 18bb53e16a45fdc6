"""``ponos-redis doctor`` and ``check``: the server and a namespace's key layout, checked.

:func:`diagnose` reads (through a :class:`~ponos_redis.ops.inspect.RedisNamespaceView`,
so it writes nothing) and returns :class:`Finding` s, each with its level
(``ok``, ``warning``, ``problem``) and, where something is wrong, its fix:

- ``server``: reachable, the Redis version (the scripts need 7 or newer), its
  role, whether it is loading its data;
- ``durability``: the configured policy against ``CONFIG GET``, with ``INFO``
  where ``CONFIG`` is denied (``aof_enabled``, ``aof_last_write_status``,
  ``maxmemory_policy``); on a cluster, every primary;
- ``replication``: replicas and their lag (or, on a replica, its link);
- ``sentinel``: each sentinel's view of the master, its quorum (``SENTINEL
  CKQUORUM``) and its replicas; ``cluster``: the cluster's state and slot coverage;
- ``schema``: the namespace exists, its schema version, a migration under way;
- ``layout``: a bounded ``SCAN`` of the namespace's keys (never ``KEYS``):
  index entries whose record is gone, records missing from their index, expired
  leases nobody reaped, records set aside as unreadable, chains nobody polls,
  keys that are not of the layout. Each finding names its keys (the first 20).

:func:`repair` fixes what is safe: it drops the index entries whose record is
gone (``lua/repair_index.lua``, which checks each again when it runs) and reaps
the expired leases (``reap_expired_leases``); records missing from their index
are not put back (that would run work again): their fix says how.

:func:`probe` is ``check``: reachable, a writable primary, the schema, the
durability policy, in as few round trips as possible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import msgspec
from redis import exceptions as rexc

from .. import _validate as v
from .._durability import CONFIG_NAMES, assess, redis_version_problem, server_facts
from .._ops import as_text, check
from .._scripts import script_source
from ..errors import PonosStorageError, StoreUnavailableError
from ..interfaces import AggregatorStore
from ..keys import SCHEMA_VERSION, KeyRef, Keys, parse_key
from ..models import TaskStatus
from .inspect import RedisNamespaceView

__all__ = [
    "DoctorReport",
    "Finding",
    "ProbeReport",
    "Repairs",
    "diagnose",
    "probe",
    "repair",
    "task_index_problems",
]

T = TypeVar("T")
Level = Literal["ok", "warning", "problem"]

MAX_NAMED = 20  # keys named by one finding
LEASE_GRACE_S = 60.0  # an expired lease older than this was not reaped: is a reaper running?
REPLICA_LAG_S = 10
_BATCH = 500
_REPAIR_BATCH = 250  # entries per repair_index call (its bound is 500)
_INDEX_READ_BOUND = 10_000_000  # entries task_index_problems reads of one status index
_SENTINEL_TIMEOUT_S = 3.0
_ALL_SLOTS = 16384
_TASK_STATUSES = frozenset(s.value for s in TaskStatus)
CHAIN_FIELDS = ["lease_owner", "lease_expires_at", "last_block"]


def _executor_indexes(keys: Keys) -> dict[str, tuple[str, Callable[[str], str]]]:
    """Executor records by kind (as :meth:`Keys.parse` names them): their index and key."""
    return {
        "performer": (keys.performers, keys.performer),
        "inflight": (keys.inflight_index, keys.inflight),
        "deployment": (keys.deployments, keys.deployment),
    }


def _r(view: RedisNamespaceView) -> Any:
    """The view's client, for commands whose redis-py annotations mix sync and async."""
    return view.client


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing ``doctor`` found: what it checked, how bad, what to do, which keys."""

    check: str
    level: Level
    summary: str
    fix: str | None = None
    keys: list[str] = msgspec.field(default_factory=list)
    count: int | None = None  # how many in all, when ``keys`` names only the first ones


class DoctorReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``doctor`` found (the ``--json`` of ``doctor``)."""

    namespace: str
    backend: str
    durability: str
    ok: bool
    namespace_found: bool | None  # None: it could not be read
    problems: int
    warnings: int
    findings: list[Finding]
    scanned_keys: int
    scan_complete: bool
    repaired: list[str] = msgspec.field(default_factory=list)


class Repairs(msgspec.Struct, kw_only=True):
    """What :func:`repair` may fix: stale index entries ``(index key, record key,
    member, mode)`` and whether leases expired unreaped."""

    stale: list[tuple[str, str, str, str]] = msgspec.field(default_factory=list)
    expired_leases: int = 0


class ProbeReport(msgspec.Struct, frozen=True, kw_only=True):
    """The ``--json`` of ``check``: each readiness condition, and what failed."""

    ok: bool
    namespace: str
    reachable: bool
    writable_primary: bool | None
    schema: bool | None
    durability: bool | None
    problems: list[str]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _split(text: str) -> tuple[str, str | None]:
    """A policy problem's text as (what is wrong, what to change)."""
    what, sep, fix = text.rpartition("; ")
    return (what, fix) if sep else (text, None)


def _named(keys: list[str]) -> tuple[list[str], int | None]:
    return keys[:MAX_NAMED], (len(keys) if len(keys) > MAX_NAMED else None)


def _finding(
    check: str, level: Level, summary: str, fix: str | None = None, keys: list[str] | None = None
) -> Finding:
    named, count = _named(keys or [])
    return Finding(check=check, level=level, summary=summary, fix=fix, keys=named, count=count)


# -- the server -------------------------------------------------------------------------


async def _info(view: RedisNamespaceView, target: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    return await view.optional("info", lambda: _r(view).info(**target))


async def _config(
    view: RedisNamespaceView, target: dict[str, Any]
) -> tuple[dict[str, str | None], str | None]:
    values: dict[str, str | None] = {}
    refused = None
    for name in CONFIG_NAMES:

        async def get(name: str = name) -> Any:
            return await _r(view).config_get(name, **target)

        reply, why = await view.optional("config get", get)
        if reply is None:
            refused = refused or why
            values[name] = None
        else:
            found = list(reply.values()) if isinstance(reply, dict) else []
            values[name] = as_text(found[0]) if found else None
    return values, refused


def _server_findings(
    info: dict[str, Any] | None, refused: str | None, view: RedisNamespaceView
) -> list[Finding]:
    if info is None:
        return [
            _finding(
                "server",
                "warning",
                f"INFO is refused ({refused}): the version, role and persistence cannot be checked",
                "allow INFO for this user (ACL: +info)",
            )
        ]
    found: list[Finding] = []
    version = str(info.get("redis_version", "unknown"))
    too_old = redis_version_problem(version)
    if too_old is not None:
        found.append(
            _finding("server", "problem", too_old.split(": upgrade")[0], "upgrade Redis to 7 or newer")
        )
    if str(info.get("loading", "0")) == "1":
        found.append(
            _finding(
                "server",
                "problem",
                "the server is loading its data (after a restart): it answers LOADING until done",
                "wait for it; stores ride through it within their retry budget",
            )
        )
    role = str(info.get("role", "?"))
    if role != "master" and not view.cluster:
        found.append(
            _finding(
                "server",
                "problem",
                f"the server is a replica (role {role}): services cannot write to it",
                "point the store at the master (or use Sentinel, which follows failovers)",
            )
        )
    if not found:
        uptime = int(info.get("uptime_in_seconds", 0))
        found.append(_finding("server", "ok", f"Redis {version}, {role}, up {uptime} s"))
    return found


def _durability_findings(
    where: str,
    info: dict[str, Any] | None,
    config: dict[str, str | None],
    refused: str | None,
    policy: str,
    replicas: int,
) -> list[Finding]:
    facts = server_facts(config, info, cluster=bool(where))
    prefix = f"{where}: " if where else ""
    found = []
    for problem in assess(policy, replicas, facts):
        what, fix = _split(problem)
        found.append(_finding("durability", "problem", prefix + what, fix))
    if refused is not None:
        fallback = (
            "appendonly and maxmemory-policy read from INFO, appendfsync unknown"
            if info is not None
            else "INFO is refused too: the persistence settings are unknown"
        )
        found.append(
            _finding(
                "durability",
                "warning",
                f"{prefix}CONFIG GET is refused ({refused}): {fallback}",
                "allow CONFIG GET (and INFO) for this user to check them",
            )
        )
    if info is not None and str(info.get("rdb_last_bgsave_status", "ok")) == "err":
        found.append(
            _finding(
                "durability",
                "warning",
                f"{prefix}the last RDB save failed (rdb_last_bgsave_status:err)",
                "check the disk and the server's log",
            )
        )
    if not any(f.level == "problem" for f in found):
        found.append(
            _finding(
                "durability",
                "ok",
                f"{prefix}appendonly {facts.appendonly}, appendfsync {facts.appendfsync}, maxmemory-policy "
                f"{facts.maxmemory_policy}: durability {policy!r} can be kept",
            )
        )
    return found


def _replication_findings(info: dict[str, Any], policy: str, replicas: int) -> list[Finding]:
    role = str(info.get("role", "?"))
    if role != "master":
        link = str(info.get("master_link_status", "?"))
        level: Level = "ok" if link == "up" else "problem"
        return [
            _finding(
                "replication",
                level,
                f"a replica of {info.get('master_host')}:{info.get('master_port')}, link {link}",
                None
                if level == "ok"
                else "check the master and the network; the replica resyncs once linked",
            )
        ]
    online, lagging = [], []
    for name, value in sorted(info.items()):
        if name.startswith("slave") and isinstance(value, dict):
            where = f"{value.get('ip')}:{value.get('port')}"
            if value.get("state") == "online":
                online.append(where)
            if int(value.get("lag", 0)) > REPLICA_LAG_S:
                lagging.append(f"{where} (lag {value.get('lag')} s)")
    found = []
    if lagging:
        found.append(
            _finding(
                "replication",
                "warning",
                f"replicas behind by more than {REPLICA_LAG_S} s: {', '.join(lagging)}",
                "a failover to a lagging replica loses writes; check its network and load",
            )
        )
    need = replicas if policy == "replicated" else 0
    if len(online) < need:
        found.append(
            _finding(
                "replication",
                "problem",
                f"{len(online)} replica(s) online, durability 'replicated' waits for {need}",
                "start or repair the replicas (each needs replicaof the master)",
            )
        )
    if not found:
        shown = ", ".join(online) if online else "none"
        found.append(_finding("replication", "ok", f"master with {len(online)} replica(s) online: {shown}"))
    return found


async def _sentinel_findings(view: RedisNamespaceView, policy: str, replicas: int) -> list[Finding]:
    clients = list(getattr(view.client, "sentinel_clients", []))
    pool = getattr(view.client, "connection_pool", None)
    service = str(getattr(pool, "service_name", ""))
    found: list[Finding] = []
    masters: dict[str, list[str]] = {}
    unreachable: list[str] = []
    quorum_problems: list[str] = []
    replica_views: list[tuple[str, int, int]] = []
    quorum = "?"
    for client in clients:
        kwargs = client.connection_pool.connection_kwargs
        name = f"{kwargs.get('host')}:{kwargs.get('port')}"

        async def ask(client: Any = client) -> tuple[Any, Any, Any]:
            master = await client.execute_command("SENTINEL", "MASTER", service)
            try:
                ck = await client.execute_command("SENTINEL", "CKQUORUM", service)
            except rexc.ResponseError as exc:
                ck = exc
            seen = await client.execute_command("SENTINEL", "REPLICAS", service)
            return master, ck, seen

        try:
            master, ck, seen = await asyncio.wait_for(ask(), _SENTINEL_TIMEOUT_S)
        except (rexc.RedisError, OSError, TimeoutError) as exc:
            unreachable.append(f"{name} ({type(exc).__name__}: {as_text(str(exc))[:80]})")
            continue
        fields = _pairs(master)
        masters.setdefault(f"{fields.get('ip')}:{fields.get('port')}", []).append(name)
        quorum = fields.get("quorum", quorum)
        flags = fields.get("flags", "")
        if "s_down" in flags or "o_down" in flags:
            quorum_problems.append(f"{name} sees the master down ({flags})")
        if isinstance(ck, Exception):
            quorum_problems.append(f"{name}: {as_text(str(ck))}")
        good = 0
        entries = [_pairs(entry) for entry in seen]
        for entry in entries:
            if "s_down" not in entry.get("flags", "") and entry.get("master-link-status", "ok") == "ok":
                good += 1
        replica_views.append((name, len(entries), good))
    if unreachable:
        level: Level = "problem" if len(unreachable) == len(clients) else "warning"
        found.append(
            _finding(
                "sentinel",
                level,
                f"{len(unreachable)} of {len(clients)} sentinel(s) unreachable: {'; '.join(unreachable)}",
                "start them: a failover needs a majority of the sentinels",
            )
        )
    if len(masters) > 1:
        seen_as = "; ".join(f"{addr} by {', '.join(names)}" for addr, names in masters.items())
        found.append(
            _finding(
                "sentinel",
                "problem",
                f"the sentinels disagree on the master of {service!r}: {seen_as}",
                "check the sentinels' configs and the network between them",
            )
        )
    if quorum_problems:
        found.append(
            _finding(
                "sentinel",
                "problem",
                "; ".join(quorum_problems),
                "a failover cannot be authorised: bring sentinels back until CKQUORUM says OK",
            )
        )
    need = replicas if policy == "replicated" else 0
    for name, total, good in replica_views:
        if good < max(need, 1 if total else 0):
            found.append(
                _finding(
                    "sentinel",
                    "problem" if good < need else "warning",
                    f"{name} sees {good} of {total} replica(s) up",
                    "start or repair the replicas: a failover promotes one of them",
                )
            )
            break
    if not found and masters:
        [(address, names)] = masters.items()
        up = replica_views[0][2] if replica_views else 0
        found.append(
            _finding(
                "sentinel",
                "ok",
                f"{len(names)} sentinel(s) agree: master {address} of {service!r}, quorum {quorum}, "
                f"{up} replica(s) up, CKQUORUM OK",
            )
        )
    return found


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {as_text(k): as_text(val) for k, val in reply.items()}
    items = list(reply or [])
    return {as_text(items[i]): as_text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


async def _cluster_findings(view: RedisNamespaceView, policy: str, replicas: int) -> list[Finding]:
    target = await view.target()
    found: list[Finding] = []

    async def cluster_info() -> Any:
        return await _r(view).execute_command("CLUSTER INFO", **target)

    raw = await view.io("cluster info", cluster_info)
    info = _cluster_info(raw)
    state = info.get("cluster_state", "?")
    assigned = int(info.get("cluster_slots_assigned", 0))
    ok_slots = int(info.get("cluster_slots_ok", 0))
    if state != "ok" or assigned < _ALL_SLOTS or ok_slots < _ALL_SLOTS:
        found.append(
            _finding(
                "cluster",
                "problem",
                f"cluster_state {state}: {assigned} of {_ALL_SLOTS} slots assigned, {ok_slots} ok, "
                f"{info.get('cluster_slots_pfail', '0')} possibly failing, "
                f"{info.get('cluster_slots_fail', '0')} failing",
                "assign every slot (redis-cli --cluster fix) and bring failed masters back or fail them over",
            )
        )
    client: Any = view.client
    await view.io("cluster slots", client.initialize)
    primaries = client.get_primaries()
    for node in primaries:
        node_target = {"target_nodes": node}
        node_info, refused = await _info(view, node_target)
        config, denied = await _config(view, node_target)
        found.extend(
            f
            for f in _durability_findings(node.name, node_info, config, denied or refused, policy, replicas)
            if f.level != "ok"
        )
        if node_info is not None and (
            too_old := redis_version_problem(str(node_info.get("redis_version", "")))
        ):
            found.append(
                _finding("server", "problem", f"{node.name}: {too_old}", "upgrade Redis to 7 or newer")
            )
    if not any(f.check == "cluster" for f in found):
        found.append(
            _finding(
                "cluster",
                "ok",
                f"cluster_state ok: all {_ALL_SLOTS} slots covered by {len(primaries)} primaries",
            )
        )
    if not any(f.check == "durability" for f in found):
        found.append(_finding("durability", "ok", f"every primary can keep durability {policy!r}"))
    return found


def _cluster_info(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {as_text(k): as_text(val) for k, val in raw.items()}
    lines = as_text(raw).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


# -- the namespace ----------------------------------------------------------------------


def _schema_findings(view: RedisNamespaceView, other_keys: int) -> list[Finding]:
    meta = view.meta
    keys = view.keys
    if not meta:
        extra = f"; yet {other_keys} key(s) carry its prefix (its meta hash was lost?)" if other_keys else ""
        return [
            _finding(
                "schema",
                "problem",
                f"namespace {view.namespace!r} not found: no {keys.meta}{extra}",
                "check --namespace and the database in the URL; ponos-redis namespace create makes it",
                [keys.meta],
            )
        ]
    found = []
    version = view.schema_version()
    if version is None:
        found.append(
            _finding(
                "schema",
                "problem",
                f"schema_version is {meta.get('schema_version')!r}, not a number",
                f"HSET {keys.meta} schema_version {SCHEMA_VERSION} if the layout is current",
                [keys.meta],
            )
        )
    elif version > SCHEMA_VERSION:
        found.append(
            _finding(
                "schema",
                "problem",
                f"schema version {version}, newer than this ponos-redis ({SCHEMA_VERSION})",
                "upgrade ponos-redis",
                [keys.meta],
            )
        )
    elif version < SCHEMA_VERSION:
        found.append(
            _finding(
                "schema",
                "problem",
                f"schema version {version}; this ponos-redis writes {SCHEMA_VERSION}: stores of this version "
                "refuse to open it",
                "migrate the namespace (ponos-redis migrate)",
                [keys.meta],
            )
        )
    if meta.get("migration"):
        found.append(
            _finding(
                "schema",
                "problem",
                f"a migration ({meta['migration']}) is under way or was interrupted: stores refuse to open",
                "run ponos-redis migrate again to finish it",
                [keys.meta],
            )
        )
    if not meta.get("epoch"):
        found.append(
            _finding(
                "schema",
                "warning",
                "the namespace has no epoch (written before epochs existed)",
                "none needed: the next store that opens it gives it one",
                [keys.meta],
            )
        )
    if not found:
        found.append(_finding("schema", "ok", f"schema version {version}, epoch {meta.get('epoch')}"))
    return found


class _Layout:
    """What one bounded walk over the namespace's keys found."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.repairs = Repairs()
        self.scanned = 0
        self.complete = True


async def _read(view: RedisNamespaceView, what: str, build: Callable[[Any], object]) -> list[Any]:
    async def call() -> list[Any]:
        pipe = _r(view).pipeline(transaction=False)
        build(pipe)
        return list(await pipe.execute())

    return await view.io(what, call)


async def _layout(view: RedisNamespaceView, *, max_keys: int, now_ms: int, grace_s: float) -> _Layout:
    result = _Layout()
    keys = view.keys
    found, truncated = await view.scan(keys.pattern, max_found=max_keys)
    result.scanned = len(found)
    result.complete = not truncated
    refs: dict[str, KeyRef] = {}
    unknown: list[str] = []
    for key in found:
        ref = parse_key(keys, key)
        if ref is None:
            unknown.append(key)
        else:
            refs[key] = ref
    task_ids = sorted(ref.ident for ref in refs.values() if ref.kind == "task")
    version = view.schema_version() or 0

    # Records -> indexes: every task hash must be on its status's index (and more).
    missing: list[tuple[str, str, str]] = []  # (task key, what it lacks, task id)
    bad_status: list[str] = []
    for start in range(0, len(task_ids), _BATCH):
        chunk = task_ids[start : start + _BATCH]
        missing.extend(await _unindexed(view, chunk, version, bad_status))
    if missing:
        # A transition moves a task between indexes in one script; look again, so a task
        # that moved while it was read is not reported.
        again = await _unindexed(view, sorted({task_id for _, _, task_id in missing}), version, [])
        confirmed = {(k, why) for k, why, _ in again}
        missing = [entry for entry in missing if entry[:2] in confirmed]
    doubled = [entry for entry in missing if entry[1].startswith("also on ")]
    missing = [entry for entry in missing if not entry[1].startswith("also on ")]
    if doubled:
        result.findings.append(
            _finding(
                "layout",
                "problem",
                f"{len(doubled)} task record(s) also on the index of another status: "
                + "; ".join(f"{k} ({why})" for k, why, _ in doubled[:5])
                + (" ..." if len(doubled) > 5 else ""),
                "such a task can be claimed, reaped or trimmed as the other status: ponos-redis show ID "
                "gives its status; ZREM it from the other status's index (as with redis-cli)",
                sorted({k for k, _, _ in doubled}),
            )
        )
    if missing:
        result.findings.append(
            _finding(
                "layout",
                "problem",
                f"{len(missing)} task record(s) missing from their index: "
                + "; ".join(f"{k} ({why})" for k, why, _ in missing[:5])
                + (" ..." if len(missing) > 5 else ""),
                "such a task is never claimed or reaped: ponos-redis tasks fail ID --yes then tasks requeue "
                "ID --yes puts it back on every index (or tasks delete ID --yes)",
                [k for k, _, _ in missing],
            )
        )
    if bad_status:
        result.findings.append(
            _finding(
                "layout",
                "problem",
                f"{len(bad_status)} task record(s) that cannot be read (the next claim or reap sets "
                "them aside): " + "; ".join(bad_status[:5]),
                "ponos-redis show ID names the bad field; HSET it right, or tasks delete ID --yes",
                [entry.split(" (")[0] for entry in bad_status],
            )
        )

    # Indexes -> records: every entry must name a record that exists.
    executor = _executor_indexes(keys)
    indexes: list[tuple[str, Callable[[str], str], str]] = [
        *((keys.tasks(s), keys.task, "gone") for s in TaskStatus),
        *((index, record_of, "gone") for index, record_of in executor.values()),
    ]
    for key, ref in sorted(refs.items()):
        if ref.kind == "avs-pending":
            indexes.append((key, keys.task, "pending"))
        elif ref.kind == "chain-tasks":
            indexes.append((key, keys.task, "gone"))
    budget = max_keys
    stale: list[tuple[str, str, str, str]] = []
    for index, record_of, mode in indexes:
        entries, budget = await _members(view, index, budget)
        if budget <= 0:
            result.complete = False
        stale.extend(await _stale(view, index, record_of, mode, entries))
    if stale:
        stale = [s for s in stale if s in set(await _stale_again(view, stale))]
    if stale:
        result.repairs.stale = stale
        result.findings.append(
            _finding(
                "layout",
                "problem",
                f"{_plural(len(stale), 'index entry', 'index entries')} whose record is gone (or, on an "
                "AVS pending index, is not pending): "
                + "; ".join(f"{i} -> {m}" for i, _, m, _ in stale[:5])
                + (" ..." if len(stale) > 5 else ""),
                "ponos-redis doctor --repair drops them (safe: each is checked again when dropped)",
                sorted({i for i, _, _, _ in stale}),
            )
        )

    # Executor records -> their index.
    unlisted = [(key, executor[ref.kind][0], ref.ident) for key, ref in refs.items() if ref.kind in executor]
    if unlisted:

        def listed(pipe: Any) -> None:
            for _, index, member in unlisted:
                pipe.zscore(index, member)

        scores = await _read(view, "layout", listed)
        lost = [key for (key, _, _), score in zip(unlisted, scores, strict=True) if score is None]
        if lost:
            result.findings.append(
                _finding(
                    "layout",
                    "warning",
                    f"{len(lost)} executor record(s) missing from their index (not listed)",
                    "save the record again (save_performer_state, save_inflight_task, "
                    "save_deployment) or DEL it",
                    lost,
                )
            )

    # Leases nobody reaped.
    processing = keys.tasks(TaskStatus.PROCESSING)
    horizon = now_ms - round(grace_s * 1000)

    def leases(pipe: Any) -> None:
        pipe.zcount(processing, "-inf", horizon)
        pipe.zrangebyscore(processing, "-inf", horizon, start=0, num=MAX_NAMED)
        pipe.zcount(processing, "-inf", now_ms)

    overdue, named, expired = await _read(view, "layout", leases)
    if int(overdue):
        result.repairs.expired_leases = int(overdue)
        result.findings.append(
            _finding(
                "layout",
                "problem",
                f"{int(overdue)} task lease(s) expired more than {grace_s:g} s ago and were not reaped: "
                "is a reaper running on any replica?",
                "ponos-redis reap (doctor --repair does it); then check that the replicas run their Reaper",
                [keys.task(as_text(i)) for i in named],
            )
        )
        if int(overdue) > len(named):
            result.findings[-1] = msgspec.structs.replace(result.findings[-1], count=int(overdue))
    elif int(expired):
        result.findings.append(
            _finding(
                "layout",
                "ok",
                f"{int(expired)} lease(s) expired less than {grace_s:g} s ago: the reaper's next work",
            )
        )

    # Records set aside as unreadable.
    aside = await view.io("layout", lambda: _r(view).zrange(keys.set_aside, 0, MAX_NAMED - 1))
    if aside:
        total = int(await view.io("layout", lambda: _r(view).zcard(keys.set_aside)))
        reasons = []
        for task_id in map(as_text, aside):
            try:
                shown = await view.task(task_id)
                reasons.append(f"{shown.key} ({shown.problem or 'readable again'})")
            except PonosStorageError as exc:  # gone in between, an id no store would take ...
                reasons.append(f"{keys.task(task_id)} ({type(exc).__name__})")
        result.findings.append(
            Finding(
                check="layout",
                level="problem",
                summary=f"{total} task record(s) set aside as unreadable (off every index): "
                + "; ".join(reasons[:5]),
                fix="ponos-redis show ID names the bad field; HSET it right, then ponos-redis tasks "
                "requeue ID --yes puts it back (off the set-aside index); or tasks delete ID --yes",
                keys=[keys.task(as_text(i)) for i in aside],
                count=total if total > len(aside) else None,
            )
        )

    # Chains nobody polls.
    idle = []
    chain_keys = [key for key, ref in refs.items() if ref.kind == "chain"]

    def chain_fields(pipe: Any) -> None:
        for key in chain_keys:
            pipe.hmget(key, CHAIN_FIELDS)

    for key, (owner, expires, cursor) in zip(
        chain_keys, await _read(view, "layout", chain_fields) if chain_keys else [], strict=True
    ):
        if (
            cursor is not None
            and owner is not None
            and expires is not None
            and as_text(expires).isdigit()
            and int(expires) < horizon
        ):
            idle.append(f"{key} (lease of {as_text(owner)} expired {(now_ms - int(expires)) // 1000} s ago)")
    if idle:
        result.findings.append(
            _finding(
                "layout",
                "warning",
                f"{len(idle)} chain(s) whose lease lapsed with nobody taking it over: no poller runs?",
                "check the replicas' ChainPoller (ponos-redis chains shows the cursors)",
                idle,
            )
        )

    if unknown:
        result.findings.append(
            _finding(
                "layout",
                "warning",
                f"{len(unknown)} key(s) with the namespace's prefix that are not of its layout "
                "(docs/keys.md)",
                "left alone; delete them if nothing of yours uses them",
                sorted(unknown),
            )
        )
    if not result.complete:
        result.findings.append(
            _finding(
                "layout",
                "warning",
                f"the checks stopped at their bound ({max_keys} keys): the rest was not looked at",
                "run doctor --max-keys N with a larger N (each key costs one read)",
            )
        )
    if not any(f.level == "problem" for f in result.findings):
        result.findings.insert(
            0,
            _finding(
                "layout",
                "ok",
                f"{result.scanned} key(s) checked: every index entry has its record and every "
                "record is indexed",
            ),
        )
    return result


async def _unindexed(
    view: RedisNamespaceView, task_ids: list[str], version: int, bad_status: list[str]
) -> list[tuple[str, str, str]]:
    """The tasks of ``task_ids`` whose record is not on exactly the indexes its fields name:
    ``(task key, what is wrong, task id)``, where what is wrong is ``not on <index>`` (its
    status's, its AVS's pending index, its chain's task index) or ``also on <index>`` (the
    index of another status). Records gone or set aside are skipped; a record whose status
    or chain cannot be read goes to ``bad_status``."""
    keys = view.keys
    statuses = list(TaskStatus)

    def fields(pipe: Any) -> None:
        for task_id in task_ids:
            pipe.hmget(keys.task(task_id), ["status", "avs_address", "chain_id"])
            pipe.zscore(keys.set_aside, task_id)
            for status in statuses:
                pipe.zscore(keys.tasks(status), task_id)

    replies = await _read(view, "layout", fields)
    width = 2 + len(statuses)
    expected: list[tuple[str, str, str]] = []  # (task key, index key, member)
    found: list[tuple[str, str, str]] = []
    for i, task_id in enumerate(task_ids):
        (status, avs, chain), aside, *on_status = replies[width * i : width * (i + 1)]
        if aside is not None or status is None:
            continue  # set aside (reported on its own), or gone since the scan
        status_text = as_text(status)
        key = keys.task(task_id)
        if status_text not in _TASK_STATUSES:
            bad_status.append(f"{key} (status {status_text!r})")
            continue
        if chain is not None and not as_text(chain).isdigit():
            bad_status.append(f"{key} (chain_id {as_text(chain)!r})")
        for other, score in zip(statuses, on_status, strict=True):
            if other.value == status_text and score is None:
                found.append((key, f"not on {keys.tasks(other)}", task_id))
            elif other.value != status_text and score is not None:
                found.append((key, f"also on {keys.tasks(other)}", task_id))
        if status_text == TaskStatus.PENDING.value and avs is not None:
            expected.append((key, keys.avs_pending(as_text(avs)), task_id))
        if version >= 2 and chain is not None and as_text(chain).isdigit():
            expected.append((key, keys.chain_tasks(int(as_text(chain))), task_id))
    if not expected:
        return found
    scores = await _read(view, "layout", lambda pipe: [pipe.zscore(index, m) for _, index, m in expected])
    return found + [
        (key, f"not on {index}", task_id)
        for (key, index, task_id), score in zip(expected, scores, strict=True)
        if score is None
    ]


async def task_index_problems(view: RedisNamespaceView, task_ids: Iterable[str]) -> tuple[int, list[str]]:
    """Whether every task is on exactly one status index, its status's, as the doctor checks
    it (its AVS's pending index and its chain's task index too), for the tasks of
    ``task_ids`` and every entry of the four status indexes; and whether every entry of a
    status index has its record. For a namespace nothing writes to (a verdict after a run):
    nothing is looked at twice.

    Returns:
        how many tasks were checked, and one line per problem.
    """
    keys = view.keys
    if not view.meta:
        await view.load_meta()
    ids = set(task_ids)
    indexed: dict[str, set[str]] = {}
    for status in TaskStatus:
        members, budget = await _members(view, keys.tasks(status), _INDEX_READ_BOUND)
        if budget <= 0:
            raise StoreUnavailableError(f"{keys.tasks(status)} has more entries than the check reads")
        indexed[keys.tasks(status)] = set(members)
        ids.update(members)
    ordered = sorted(ids)
    problems: list[str] = []
    bad_status: list[str] = []
    exists: list[str] = []
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start : start + _BATCH]

        def build(pipe: Any, batch: list[str] = batch) -> None:
            for task_id in batch:
                pipe.exists(keys.task(task_id))

        replies = await _read(view, "layout", build)
        for task_id, n in zip(batch, replies, strict=True):
            if int(n):
                exists.append(task_id)
                continue
            problems.extend(
                f"{index} -> {task_id}: the record is gone"
                for index, entries in indexed.items()
                if task_id in entries
            )
    version = view.schema_version() or 0
    for start in range(0, len(exists), _BATCH):
        found = await _unindexed(view, exists[start : start + _BATCH], version, bad_status)
        problems.extend(f"{key}: {why}" for key, why, _ in found)
    problems.extend(f"{entry}: unreadable" for entry in bad_status)
    return len(exists), problems


async def _members(view: RedisNamespaceView, index: str, budget: int) -> tuple[list[str], int]:
    members: list[str] = []
    start = 0
    while budget > 0:
        count = min(1000, budget)

        async def call(start: int = start, count: int = count) -> list[Any]:
            return list(await _r(view).zrange(index, start, start + count - 1))

        chunk = await view.io("layout", call)
        members.extend(as_text(m) for m in chunk)
        budget -= len(chunk)
        start += len(chunk)
        if len(chunk) < count:
            break
    return members, budget


async def _stale(
    view: RedisNamespaceView, index: str, record_of: Callable[[str], str], mode: str, members: list[str]
) -> list[tuple[str, str, str, str]]:
    stale = []
    for start in range(0, len(members), _BATCH):
        chunk = members[start : start + _BATCH]

        def build(pipe: Any, chunk: list[str] = chunk) -> None:
            for member in chunk:
                pipe.hget(record_of(member), "status") if mode == "pending" else pipe.exists(
                    record_of(member)
                )

        for member, reply in zip(chunk, await _read(view, "layout", build), strict=True):
            gone = (reply is None or as_text(reply) != "pending") if mode == "pending" else not int(reply)
            if gone:
                stale.append((index, record_of(member), member, mode))
    return stale


async def _stale_again(
    view: RedisNamespaceView, stale: list[tuple[str, str, str, str]]
) -> list[tuple[str, str, str, str]]:
    def build(pipe: Any) -> None:
        for index, record, member, _ in stale:
            pipe.zscore(index, member)
            pipe.exists(record)
            pipe.hget(record, "status")

    replies = await _read(view, "layout", build)
    confirmed = []
    for i, entry in enumerate(stale):
        score, exists, status = replies[3 * i : 3 * i + 3]
        if score is None:
            continue
        if not int(exists) or (entry[3] == "pending" and (status is None or as_text(status) != "pending")):
            confirmed.append(entry)
    return confirmed


# -- entry points -----------------------------------------------------------------------


async def diagnose(
    view: RedisNamespaceView,
    *,
    max_keys: int = 100_000,
    lease_grace_s: float = LEASE_GRACE_S,
) -> tuple[DoctorReport, Repairs]:
    """Check the server and the namespace; the report, and what :func:`repair` may fix.

    Args:
        view: a view opened with ``must_exist=False, allow_newer_schema=True``.
        max_keys: the bound of the layout checks (keys scanned, index entries read).
        lease_grace_s: how long past its expiry a lease may wait for a reaper.
    """
    settings = view.settings
    policy, replicas = settings.durability, settings.replicas
    findings: list[Finding] = []
    target = await view.target()
    info, refused = await _info(view, target)
    findings.extend(_server_findings(info, refused, view))
    if view.cluster:
        findings.extend(await _cluster_findings(view, policy, replicas))
    else:
        config, denied = await _config(view, target)
        findings.extend(_durability_findings("", info, config, denied, policy, replicas))
        if info is not None:
            findings.extend(_replication_findings(info, policy, replicas))
        if hasattr(view.client, "sentinel_clients"):
            findings.extend(await _sentinel_findings(view, policy, replicas))
    repairs = Repairs()
    scanned, complete = 0, True
    found_namespace: bool | None = None
    try:
        await view.load_meta()
        found_namespace = bool(view.meta)
    except StoreUnavailableError as exc:
        findings.append(
            _finding(
                "schema",
                "problem",
                f"the namespace cannot be read: {exc}",
                "fix what the findings above say (the node of the namespace's slot, the cluster's "
                "slots, the network), then run doctor again",
            )
        )
    if found_namespace is None:
        pass
    elif view.meta:
        findings.extend(_schema_findings(view, 0))
        now, _ = await view.now()
        layout = await _layout(view, max_keys=max_keys, now_ms=v.to_ms(now), grace_s=lease_grace_s)
        findings.extend(layout.findings)
        repairs, scanned, complete = layout.repairs, layout.scanned, layout.complete
    else:
        found, _ = await view.scan(view.keys.pattern, max_found=MAX_NAMED)
        findings.extend(_schema_findings(view, len(found)))
    problems = sum(1 for f in findings if f.level == "problem")
    return (
        DoctorReport(
            namespace=view.namespace,
            backend="redis",
            durability=policy,
            ok=problems == 0,
            namespace_found=found_namespace,
            problems=problems,
            warnings=sum(1 for f in findings if f.level == "warning"),
            findings=findings,
            scanned_keys=scanned,
            scan_complete=complete,
        ),
        repairs,
    )


async def repair(view: RedisNamespaceView, repairs: Repairs, store: AggregatorStore | None) -> list[str]:
    """Fix what is safe; one line per thing done.

    Drops the stale index entries (each checked again by the script) and, with
    ``store`` (the namespace's aggregator store), reaps the expired leases.
    """
    done: list[str] = []
    if repairs.stale:
        script = _r(view).register_script(script_source("repair_index"))
        epoch = view.meta.get("epoch", "")
        maxlen = view.config.events_maxlen
        dropped: list[str] = []
        for start in range(0, len(repairs.stale), _REPAIR_BATCH):
            chunk = repairs.stale[start : start + _REPAIR_BATCH]
            keys = [view.keys.events]
            args: list[Any] = ["", maxlen]
            for index, record, member, mode in chunk:
                keys.extend((index, record))
                args.extend((member, mode))
            keys.append(view.keys.meta)
            args.append(epoch)

            async def call(keys: list[str] = keys, args: list[Any] = args) -> Any:
                return await script(keys=keys, args=args)

            reply = await view.io("repair_index", call)
            ids = check(reply, f"namespace {view.namespace!r}: repair_index")
            for i in ids:
                index, _, member, _ = chunk[int(i)]
                dropped.append(f"{index} {member}")
        shown = ", ".join(dropped[:MAX_NAMED]) + (" ..." if len(dropped) > MAX_NAMED else "")
        done.append(
            f"dropped {_plural(len(dropped), 'stale index entry', 'stale index entries')}: {shown}"
            if dropped
            else "no stale index entry left to drop"
        )
    if repairs.expired_leases and store is not None:
        reaped = await store.reap_expired_leases()
        done.append(f"reaped {reaped} expired lease(s) (reap_expired_leases)")
    return done


async def probe(view: RedisNamespaceView) -> ProbeReport:
    """``check``: reachable (the view opened), a writable primary, the schema, durability."""
    problems: list[str] = []
    target = await view.target()
    info, refused = await _info(view, target)
    writable: bool | None = None
    if info is None:
        problems.append(f"INFO refused ({refused}): cannot tell a writable primary")
    else:
        writable = True
        if str(info.get("role")) != "master":
            writable = False
            problems.append(f"not a primary (role {info.get('role')})")
        if str(info.get("loading", "0")) == "1":
            writable = False
            problems.append("loading its data")
        if str(info.get("aof_last_write_status", "ok")) == "err":
            writable = False
            problems.append("its last AOF write failed: it refuses writes")
        if view.cluster and str(info.get("cluster_enabled", "0")) == "1":
            raw = await view.io(
                "cluster info",
                lambda: _r(view).execute_command("CLUSTER INFO", **target),
            )
            if _cluster_info(raw).get("cluster_state") != "ok":
                writable = False
                problems.append("cluster_state is not ok")
    schema: bool | None = None
    if view.meta:
        version = view.schema_version()
        schema = version == SCHEMA_VERSION and not view.meta.get("migration")
        if not schema:
            problems.append(
                f"schema version {version} (this ponos-redis: {SCHEMA_VERSION})"
                + (f", migration {view.meta['migration']} under way" if view.meta.get("migration") else "")
            )
    config, _ = await _config(view, target)
    facts = server_facts(config, info)
    policy = assess(view.settings.durability, view.settings.replicas, facts)
    problems.extend(_split(p)[0] for p in policy)
    too_old = redis_version_problem(facts.redis_version)
    if too_old is not None:
        problems.append(_split(too_old)[0])
    return ProbeReport(
        ok=not problems,
        namespace=view.namespace,
        reachable=True,
        writable_primary=writable,
        schema=schema,
        durability=not policy,
        problems=problems,
    )
