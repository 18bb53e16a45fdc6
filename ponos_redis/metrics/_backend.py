"""The one place that knows backends: their label, and the few namespace facts the
store interface does not offer (event stream length and cap, its last id, set-aside
records, which chains exist and whether a live lease holds each).

Everything else the namespace collector reads goes through the public store
methods (count_tasks, list_pending_tasks, get_task, get_last_processed_block,
events).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .._ops import as_text

__all__ = ["BackendFacts", "backend_facts", "backend_name", "unwrap"]

_CHAIN_KEYS_SCANNED = 10_000  # a bound on discovering chains by SCAN


@dataclass(frozen=True)
class BackendFacts:
    """What only the backend can tell; ``None`` where it cannot either."""

    events_length: int | None = None
    events_max_length: int | None = None
    last_event_id: str | None = None
    set_aside: int | None = None
    # chain id -> whether a live lease is held on it (None: unknown)
    chains: dict[int, bool | None] = field(default_factory=dict)


def unwrap(store: Any) -> Any:
    """The store under any instrumentation wrapper."""
    while hasattr(store, "inner"):
        store = store.inner
    return store


def backend_name(store: object) -> str:
    """``redis``, ``memory`` or, for a store of your own, its class name in lower case."""
    module = type(store).__module__
    if module == "ponos_redis.backends.redis":
        return "redis"
    if module == "ponos_redis.backends.memory":
        return "memory"
    return type(store).__name__.lower()


async def backend_facts(store: object, chain_ids: Collection[int] | None = None) -> BackendFacts:
    """The namespace facts the interface does not offer.

    Args:
        store: an aggregator store (wrapped or not).
        chain_ids: the chains to report; None: every chain the namespace has.
    """
    inner = unwrap(store)
    name = backend_name(inner)
    if name == "redis":
        return await _redis_facts(inner, chain_ids)
    if name == "memory":
        return _memory_facts(inner, chain_ids)
    return BackendFacts(chains=dict.fromkeys(chain_ids or (), None))


async def _redis_facts(store: Any, chain_ids: Collection[int] | None) -> BackendFacts:
    keys, r = store.keys, store._r

    async def call() -> BackendFacts:
        pipe = r.pipeline(transaction=False)
        pipe.xlen(keys.events)
        pipe.xrevrange(keys.events, count=1)
        pipe.zcard(keys.set_aside)
        length, last, set_aside = await pipe.execute()
        if chain_ids is None:
            chains = await _scan_chain_ids(r, keys.prefix)
        else:
            chains = sorted(set(chain_ids))
        now = store._now()
        if now:
            now_ms = int(now)
        else:
            seconds, micros = await r.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
        held: dict[int, bool | None] = {}
        if chains:
            pipe = r.pipeline(transaction=False)
            for chain_id in chains:
                pipe.hget(keys.chain(chain_id), "lease_expires_at")
            for chain_id, expires in zip(chains, await pipe.execute(), strict=True):
                held[chain_id] = expires is not None and int(expires) > now_ms
        return BackendFacts(
            events_length=int(length),
            events_max_length=int(store._settings.events_maxlen),
            last_event_id=as_text(last[0][0]) if last else None,
            set_aside=int(set_aside),
            chains=held,
        )

    result: BackendFacts = await store._io("metrics: namespace facts", call)
    return result


async def _scan_chain_ids(r: Any, prefix: str) -> list[int]:
    """The chains with a ``chain:<id>`` hash (cursor or lease), by a bounded SCAN."""
    stem = f"{prefix}chain:"
    found: set[int] = set()
    seen = 0
    async for raw in r.scan_iter(match=stem + "*", count=1000):
        seen += 1
        rest = as_text(raw)[len(stem) :]
        if rest.isdigit():
            found.add(int(rest))
        if seen >= _CHAIN_KEYS_SCANNED:
            break
    return sorted(found)


def _memory_facts(store: Any, chain_ids: Collection[int] | None) -> BackendFacts:
    state = store._s
    now = store._clock()
    chains = sorted(set(state.cursors) | set(state.leases)) if chain_ids is None else sorted(set(chain_ids))
    held: dict[int, bool | None] = {}
    for chain_id in chains:
        lease = state.leases.get(chain_id)
        held[chain_id] = lease is not None and lease.expires_at > now
    return BackendFacts(
        events_length=len(state.events),
        events_max_length=int(store._settings.events_maxlen),
        last_event_id=state.events[-1].id if state.events else None,
        set_aside=0,  # the fake never meets an unreadable record
        chains=held,
    )
