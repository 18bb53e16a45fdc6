"""The Redis key layout of a namespace: the only place key names are built.

Every key of a namespace starts with ``ponos:{<namespace>}:``. The braces are
Redis Cluster's hash tag: all keys of a namespace live in one slot, so every
Lua script touches a single slot, while different namespaces spread over the
shards. A namespace cannot contain braces, and every id follows a fixed
prefix, so an id that contains ``:`` or ``{`` can never alias another key.

Why each structure is what it is:

- ``task:<id>`` is a **hash** so that ``HGETALL`` shows a task to a person:
  every field but the payload is plain text (times in epoch milliseconds).
- ``tasks:pending`` is a **sorted set** scored by a per-namespace sequence
  number (``seq``), so claims and listings are strictly first-in first-out,
  and a task that returns to pending keeps its place. ``tasks:processing`` is
  scored by lease expiry (ms), so the reaper reads exactly the expired leases
  with one ``ZRANGEBYSCORE``. ``tasks:completed`` / ``tasks:failed`` are
  scored by the time they ended, so retention trims the oldest first.
- ``avs:<address>:pending`` mirrors ``tasks:pending`` for one AVS.
- ``events`` is a capped **stream**: ids are ordered, readers can resume, and
  ``XADD ... MAXLEN ~`` bounds it.
- ``chain:<id>`` is a **hash** with the cursor and the chain's lease; it is an
  exact key, never a prefix scan, so chain 1 never matches chain 17000.
  ``chain:<id>:blocks`` (hash number -> JSON) and ``chain:<id>:block-index``
  (sorted set by number) let a rewind drop every record above a block at once.
  ``chain:<id>:tasks`` is a **sorted set** of the chain's task ids scored by
  block number, so the tasks above a reorged block are one range read
  (tasks of every status; a task leaves it when it is deleted or trimmed).
- ``runner:<name>`` is a **string** with a TTL (``<expiry ms>:<owner>``): the
  single-runner lease of a periodic job, which vanishes when it lapses.
- ``claim:<claim id>`` remembers, for one lease length, what a claim call got,
  so a claim retried after a lost reply returns the same tasks.
- ``fence`` and ``seq`` are counters (``INCR``): fencing tokens only grow.
- ``meta`` is a hash with the schema version, the creation time and the
  namespace's **epoch**: a random id made when the namespace is created. Every
  writing script checks it, so a store whose namespace vanished (Redis lost its
  data) or was re-created stops with ``NamespaceLostError`` instead of writing
  into a namespace it does not know. Every writing script also checks the
  schema version against the one it was written for, so a replica of an older
  version stops with ``SchemaVersionError`` once the namespace was migrated.
  While ``ponos-redis migrate`` runs, ``migration`` (``<from>-><to>``) and
  ``migration_cursor`` say how far it got; stores refuse to open until it ends.
- ``set-aside`` is a **sorted set** (score: when, in ms) of tasks whose hash
  could not be read (a field edited by hand): they are off every status index,
  so they are not claimed or reaped again and again; ``doctor`` lists them.
- Executor records are hashes indexed by a sorted set with score 0 (listed in
  id order); a deployment's history is a capped stream; each processed-task
  marker is its own string key with a TTL, so markers expire one by one.

Schema versions (``SCHEMA_VERSION``; ``ponos_redis.ops.migrate`` upgrades):

1. the first layout.
2. ``chain:<id>:tasks`` holds every task of the chain (version 1 namespaces
   may have tasks saved before that index existed, which it lacks).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _validate as v
from .models import TaskStatus

__all__ = ["SCHEMA_VERSION", "KeyRef", "Keys", "namespace_of", "parse_key"]

SCHEMA_VERSION = 2

# Keys with a fixed name, by their name after the prefix (see Keys.parse).
_FIXED = {
    "meta": "meta",
    "set-aside": "set-aside",
    "fence": "fence",
    "seq": "seq",
    "events": "events",
    "performers": "performers",
    "inflight-index": "inflight-index",
    "deployments": "deployments",
}
# Keys named <stem>:<id>, whatever the id holds (ids may contain ':').
_STEMS = ("task", "claim", "runner", "performer", "inflight", "deployment", "history", "processed")
_CHAIN_SUFFIXES = {
    "": "chain",
    ":blocks": "chain-blocks",
    ":block-index": "chain-block-index",
    ":tasks": "chain-tasks",
}


@dataclass(frozen=True, slots=True)
class KeyRef:
    """What one key of a namespace is: its ``kind`` and the id it is about.

    Kinds: the fixed keys by name (``meta``, ``set-aside``, ``fence``, ``seq``,
    ``events``, ``performers``, ``inflight-index``, ``deployments``); ``tasks``
    (``ident``: the status); ``task``, ``claim``, ``runner``, ``performer``,
    ``inflight``, ``deployment``, ``history``, ``processed`` (``ident``: the id);
    ``avs-pending`` and ``avs-config`` (the address); ``opset``
    (``<address>:<operator set id>``); ``chain``, ``chain-blocks``,
    ``chain-block-index``, ``chain-tasks`` (the chain id).
    """

    kind: str
    ident: str = ""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        v.namespace(self.namespace)

    @property
    def prefix(self) -> str:
        return f"ponos:{{{self.namespace}}}:"

    # namespace-wide
    @property
    def meta(self) -> str:
        return self.prefix + "meta"

    @property
    def set_aside(self) -> str:
        return self.prefix + "set-aside"

    @property
    def fence(self) -> str:
        return self.prefix + "fence"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    # tasks
    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def tasks(self, status: TaskStatus) -> str:
        return f"{self.prefix}tasks:{status.value}"

    def claim(self, claim_id: str) -> str:
        return f"{self.prefix}claim:{claim_id}"

    def avs_pending(self, avs_address: str) -> str:
        return f"{self.prefix}avs:{avs_address}:pending"

    # chain
    def chain(self, chain_id: int) -> str:
        return f"{self.prefix}chain:{chain_id}"

    def blocks(self, chain_id: int) -> str:
        return f"{self.prefix}chain:{chain_id}:blocks"

    def block_index(self, chain_id: int) -> str:
        return f"{self.prefix}chain:{chain_id}:block-index"

    def chain_tasks(self, chain_id: int) -> str:
        return f"{self.prefix}chain:{chain_id}:tasks"

    # periodic jobs
    def runner(self, name: str) -> str:
        return f"{self.prefix}runner:{name}"

    # config cache
    def operator_set_config(self, avs_address: str, operator_set_id: int) -> str:
        return f"{self.prefix}opset:{avs_address}:{operator_set_id}"

    def avs_config(self, avs_address: str) -> str:
        return f"{self.prefix}avs:{avs_address}:config"

    # executor
    def performer(self, performer_id: str) -> str:
        return f"{self.prefix}performer:{performer_id}"

    @property
    def performers(self) -> str:
        return self.prefix + "performers"

    def inflight(self, task_id: str) -> str:
        return f"{self.prefix}inflight:{task_id}"

    @property
    def inflight_index(self) -> str:
        return self.prefix + "inflight-index"

    def deployment(self, deployment_id: str) -> str:
        return f"{self.prefix}deployment:{deployment_id}"

    @property
    def deployments(self) -> str:
        return self.prefix + "deployments"

    def deployment_history(self, deployment_id: str) -> str:
        return f"{self.prefix}history:{deployment_id}"

    def processed(self, task_id: str) -> str:
        return f"{self.prefix}processed:{task_id}"

    # finding keys (SCAN MATCH patterns) and telling what a key is
    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the namespace."""
        return self.prefix + "*"

    @property
    def chain_pattern(self) -> str:
        """A SCAN pattern matching the chain keys (``chain:<id>`` and its companions)."""
        return self.prefix + "chain:*"

    @property
    def runner_pattern(self) -> str:
        """A SCAN pattern matching the periodic jobs' runner leases."""
        return self.prefix + "runner:*"


def namespace_of(key: str) -> str | None:
    """The namespace of one of its keys (``ponos:{<namespace>}:...``), or None."""
    if not key.startswith("ponos:{"):
        return None
    name, sep, _ = key[len("ponos:{") :].partition("}:")
    return name if sep and name else None


def parse_key(keys: Keys, key: str | bytes) -> KeyRef | None:
    """What ``key`` is in the layout of ``keys``' namespace; None if it is not one of its keys."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if not text.startswith(keys.prefix):
        return None
    rest = text[len(keys.prefix) :]
    if rest in _FIXED:
        return KeyRef(_FIXED[rest])
    stem, sep, ident = rest.partition(":")
    if not sep or not ident:
        return None
    if stem == "tasks":
        return KeyRef("tasks", ident) if ident in {s.value for s in TaskStatus} else None
    if stem in _STEMS:
        return KeyRef(stem, ident)
    if stem == "avs":
        address, _, what = ident.partition(":")
        if what in ("pending", "config"):
            return KeyRef(f"avs-{what}", address)
        return None
    if stem == "opset":
        address, _, set_id = ident.partition(":")
        return KeyRef("opset", ident) if address and set_id.isdigit() else None
    if stem == "chain":
        digits, sep, suffix = ident.partition(":")
        kind = _CHAIN_SUFFIXES.get(sep + suffix)
        return KeyRef(kind, digits) if kind is not None and digits.isdigit() else None
    return None
