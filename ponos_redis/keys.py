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
  into a namespace it does not know.
- ``set-aside`` is a **sorted set** (score: when, in ms) of tasks whose hash
  could not be read (a field edited by hand): they are off every status index,
  so they are not claimed or reaped again and again; ``doctor`` lists them.
- Executor records are hashes indexed by a sorted set with score 0 (listed in
  id order); a deployment's history is a capped stream; each processed-task
  marker is its own string key with a TTL, so markers expire one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _validate as v
from .models import TaskStatus

__all__ = ["SCHEMA_VERSION", "Keys"]

SCHEMA_VERSION = 1


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
